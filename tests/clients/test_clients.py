"""Real client libraries nobody here wrote, against the real binary over HTTP: the official
`openai` npm and Python clients and the Vercel AI SDK's OpenAI provider, at the versions
tests/clients pins (installed by scripts/clients.sh into a cache outside the clone).

Each check is a small program in node/ or python/ that makes the calls an application makes and
asserts what it gets back; a failing check's own message is the test's failure message."""
import json
import os
import subprocess
import unittest

from harness import Server

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CHECK_TIMEOUT_S = 120


def install_clients():
    """The cache directory with node_modules/ and venv/ (installs on first use)."""
    out = subprocess.run([os.path.join(REPO, "scripts", "clients.sh")], check=True,
                         capture_output=True, text=True, timeout=600)
    return out.stdout.strip().splitlines()[-1]


class ClientLibrariesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.clients = install_clients()
        # A real chat template (Qwen 2.5's) so that tools render; llama.cpp ships it.
        template = os.path.join(os.environ.get("EMBER_LLAMA_TEMPLATES_DIR", ""),
                                "Qwen-Qwen2.5-7B-Instruct.jinja")
        assert os.path.exists(template), f"no chat template at {template}"
        cls.server = Server("--ctx-size", "4096", "--chat-template-file", template)
        status, body, _ = cls.server.get("/v1/models")
        assert status == 200, body
        cls.model = json.loads(body)["data"][0]["id"]
        cls.base_url = f"http://127.0.0.1:{cls.server.port}/v1"

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def node(self, script, check):
        self.run_check_named(["node", os.path.join(HERE, "node", script)], check)

    def python(self, check):
        self.run_check_named([os.path.join(self.clients, "venv", "bin", "python"),
                              os.path.join(HERE, "python", "openai_py.py")], check)

    def run_check_named(self, argv, check):
        try:
            r = subprocess.run([*argv, self.base_url, self.model, check], capture_output=True,
                               text=True, timeout=CHECK_TIMEOUT_S, cwd=HERE)
        except subprocess.TimeoutExpired as e:
            self.fail(f"{check} took over {CHECK_TIMEOUT_S} s: {e.stderr}")
        self.assertEqual(r.returncode, 0, f"{check}:\n{r.stdout}{r.stderr}\n"
                         f"server log:\n{self.server.log_tail()}")

    # The openai npm client.
    def test_openai_node_lists_models(self):
        self.node("openai_sdk.mjs", "models")

    def test_openai_node_chat(self):
        self.node("openai_sdk.mjs", "chat")

    def test_openai_node_streamed_chat_equals_whole(self):
        self.node("openai_sdk.mjs", "chat_stream")

    def test_openai_node_stream_helper(self):
        self.node("openai_sdk.mjs", "chat_stream_helper")

    def test_openai_node_chat_logprobs(self):
        self.node("openai_sdk.mjs", "chat_logprobs")

    def test_openai_node_completions(self):
        self.node("openai_sdk.mjs", "completions")

    def test_openai_node_streamed_completions_equal_whole(self):
        self.node("openai_sdk.mjs", "completions_stream")

    def test_openai_node_embeddings_decode_base64(self):
        self.node("openai_sdk.mjs", "embeddings")

    def test_openai_node_parses_several_choices(self):
        self.node("openai_sdk.mjs", "choices")

    def test_openai_node_errors_are_typed(self):
        self.node("openai_sdk.mjs", "errors")

    def test_openai_node_tools_required(self):
        self.node("openai_sdk.mjs", "tools_required")

    def test_openai_node_streamed_tool_call(self):
        self.node("openai_sdk.mjs", "tools_stream")

    def test_openai_node_response_format(self):
        self.node("openai_sdk.mjs", "response_format")

    def test_openai_node_responses(self):
        self.node("openai_sdk.mjs", "responses")

    def test_openai_node_responses_tools(self):
        self.node("openai_sdk.mjs", "responses_tools")

    def test_openai_node_responses_streamed_tool_call(self):
        self.node("openai_sdk.mjs", "responses_tools_stream")

    # The Vercel AI SDK.
    def test_ai_sdk_generate_text(self):
        self.node("ai_sdk.mjs", "generate_text")

    def test_ai_sdk_stream_text(self):
        self.node("ai_sdk.mjs", "stream_text")

    def test_ai_sdk_responses_default_provider(self):
        self.node("ai_sdk.mjs", "responses_text")

    def test_ai_sdk_tool_call(self):
        self.node("ai_sdk.mjs", "tool_call")

    def test_ai_sdk_responses_streamed_tool_call(self):
        self.node("ai_sdk.mjs", "responses_tool_stream")

    def test_ai_sdk_generate_object(self):
        self.node("ai_sdk.mjs", "generate_object")

    def test_ai_sdk_completion_model(self):
        self.node("ai_sdk.mjs", "completion")

    # The openai Python client.
    def test_openai_python_chat(self):
        self.python("chat")

    def test_openai_python_streamed_chat_equals_whole(self):
        self.python("chat_stream")

    def test_openai_python_chat_logprobs(self):
        self.python("chat_logprobs")

    def test_openai_python_completions(self):
        self.python("completions")

    def test_openai_python_errors_are_typed(self):
        self.python("errors")

    def test_openai_python_embeddings_decode_base64(self):
        self.python("embeddings")

    def test_openai_python_tools_required(self):
        self.python("tools_required")

    def test_openai_python_structured_parse(self):
        self.python("structured_parse")

    def test_openai_python_responses(self):
        self.python("responses")

    def test_openai_python_responses_streamed_tool_call(self):
        self.python("responses_tools_stream")

    def test_openai_python_lists_models(self):
        self.python("models")


if __name__ == "__main__":
    unittest.main()
