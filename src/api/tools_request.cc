// The chat request's agent fields: tools, tool_choice, parallel_tool_calls, response_format,
// and the tool calls an assistant message carries in the history. Validated as OpenAI does,
// each mistake a 400 naming the field; the schemas themselves are checked for size and depth
// here and for what constrained decoding can enforce where they are compiled.
#include <cstddef>
#include <string>
#include <unordered_set>

#include "api/openai.h"
#include "api/request_parse.h"

namespace ember::api {

namespace {

bool ValidFunctionName(std::string_view name) {
  if (name.empty() || name.size() > kMaxFunctionNameBytes) return false;
  for (const char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// Deepest nesting of objects and arrays inside `value` (a scalar is 0).
int Depth(const Json& value) {
  int deepest = 0;
  if (value.is_object() || value.is_array()) {
    for (const Json& child : value) deepest = std::max(deepest, Depth(child));
    return deepest + 1;
  }
  return 0;
}

Result<std::string> ReadName(const Json& object, const std::string& param, std::string_view what) {
  const Json* name = FindField(object, "name");
  if (name == nullptr || !name->is_string()) {
    return InvalidArgument(param + " is required: the " + std::string(what) + "'s name", param);
  }
  const auto& text = name->get_ref<const std::string&>();
  if (!ValidFunctionName(text)) {
    return InvalidArgument(
        param + " must be 1 to 64 letters, digits, '_' or '-', got '" + Truncated(text) + "'",
        param);
  }
  return text;
}

// A JSON Schema given as an object: its compact JSON text, within the documented limits.
Result<std::string> ReadSchema(const Json& owner, std::string_view key, const std::string& param) {
  const Json* schema = FindField(owner, key);
  if (schema == nullptr) return std::string("{}");
  if (!schema->is_object()) {
    return InvalidArgument(param + " must be a JSON Schema object, got " + Describe(*schema),
                           param);
  }
  if (const int depth = Depth(*schema); depth > kMaxSchemaDepth) {
    return InvalidArgument(param + " nests " + std::to_string(depth) + " levels deep; at most " +
                               std::to_string(kMaxSchemaDepth) + " are accepted",
                           param);
  }
  std::string text = schema->dump();
  if (text.size() > kMaxSchemaBytes) {
    return InvalidArgument(param + " is " + std::to_string(text.size()) +
                               " bytes as JSON; at most " + std::to_string(kMaxSchemaBytes) +
                               " are accepted",
                           param);
  }
  return text;
}

Status ReadStrict(const Json& owner, const std::string& param, bool& out) {
  const Json* strict = FindField(owner, "strict");
  if (strict == nullptr) return {};
  if (!strict->is_boolean()) {
    return InvalidArgument(param + " must be true or false, got " + Describe(*strict), param);
  }
  out = strict->get<bool>();
  return {};
}

Result<ToolDefinition> ParseTool(const Json& tool, std::size_t index) {
  const std::string where = "tools[" + std::to_string(index) + "]";
  if (!tool.is_object()) {
    return InvalidArgument(
        where + " must be an object like {\"type\": \"function\", \"function\": {...}}, got " +
            Describe(tool),
        where);
  }
  const Json* type = FindField(tool, "type");
  if (type == nullptr || !type->is_string() || *type != "function") {
    return InvalidArgument(where + ".type must be \"function\" (the only tool type served)",
                           where + ".type");
  }
  const Json* function = FindField(tool, "function");
  if (function == nullptr || !function->is_object()) {
    return InvalidArgument(where + ".function must be an object with name and parameters",
                           where + ".function");
  }
  return ReadFunction(*function, where + ".function");
}

Status ParseToolList(const Json& request, GenerationParams& params) {
  const Json* tools = FindField(request, "tools");
  if (tools == nullptr) return {};
  if (!tools->is_array()) {
    return InvalidArgument("tools must be an array of function tools, got " + Describe(*tools),
                           "tools");
  }
  if (tools->size() > kMaxTools) {
    return InvalidArgument("tools holds at most " + std::to_string(kMaxTools) + " functions, got " +
                               std::to_string(tools->size()),
                           "tools");
  }
  std::unordered_set<std::string> names;
  for (std::size_t i = 0; i < tools->size(); ++i) {
    auto tool = ParseTool((*tools)[i], i);
    if (!tool) return std::unexpected(tool.error());
    if (!names.insert(tool->name).second) {
      const std::string param = "tools[" + std::to_string(i) + "].function.name";
      return InvalidArgument("tools has two functions named '" + tool->name + "'", param);
    }
    params.tools.push_back(std::move(*tool));
  }
  return {};
}

Status ParseToolChoiceField(const Json& request, GenerationParams& params) {
  const Json* choice = FindField(request, "tool_choice");
  if (choice == nullptr) return CheckToolChoice(params, "tool_choice.function.name");
  if (choice->is_object()) {
    const Json* type = FindField(*choice, "type");
    const Json* function = FindField(*choice, "function");
    if (type == nullptr || !type->is_string() || *type != "function" || function == nullptr ||
        !function->is_object()) {
      return InvalidArgument(
          "tool_choice as an object must be {\"type\": \"function\", \"function\": {\"name\": "
          "...}}",
          "tool_choice");
    }
    auto name = ReadName(*function, "tool_choice.function.name", "function");
    if (!name) return std::unexpected(name.error());
    params.tool_choice = {ToolChoice::Mode::kNamed, std::move(*name)};
    return CheckToolChoice(params, "tool_choice.function.name");
  }
  if (auto mode = ReadToolChoiceMode(*choice, params); !mode) return mode;
  return CheckToolChoice(params, "tool_choice.function.name");
}

}  // namespace

Result<ToolDefinition> ReadFunction(const Json& function, const std::string& where) {
  ToolDefinition def;
  auto name = ReadName(function, where + ".name", "function");
  if (!name) return std::unexpected(name.error());
  def.name = std::move(*name);
  if (const Json* description = FindField(function, "description"); description != nullptr) {
    if (!description->is_string()) {
      return InvalidArgument(where + ".description must be a string, got " + Describe(*description),
                             where + ".description");
    }
    def.description = description->get<std::string>();
  }
  auto parameters = ReadSchema(function, "parameters", where + ".parameters");
  if (!parameters) return std::unexpected(parameters.error());
  def.parameters = std::move(*parameters);
  if (auto strict = ReadStrict(function, where + ".strict", def.strict); !strict) {
    return std::unexpected(strict.error());
  }
  return def;
}

Status ReadToolChoiceMode(const Json& choice, GenerationParams& params) {
  using Mode = ToolChoice::Mode;
  const auto& mode = choice.is_string() ? choice.get_ref<const std::string&>() : std::string();
  if (!choice.is_string()) {
    return InvalidArgument("tool_choice must be a string or an object, got " + Describe(choice),
                           "tool_choice");
  }
  if (mode == "none") {
    params.tool_choice.mode = Mode::kNone;
  } else if (mode == "auto") {
    params.tool_choice.mode = Mode::kAuto;
  } else if (mode == "required") {
    params.tool_choice.mode = Mode::kRequired;
  } else {
    return InvalidArgument(
        "tool_choice must be \"none\", \"auto\", \"required\" or a named function, got '" +
            Truncated(mode) + "'",
        "tool_choice");
  }
  return {};
}

Status CheckToolChoice(const GenerationParams& params, std::string_view name_param) {
  using Mode = ToolChoice::Mode;
  const Mode mode = params.tool_choice.mode;
  if (params.tools.empty() && (mode == Mode::kRequired || mode == Mode::kNamed)) {
    return InvalidArgument("tool_choice requires tools: no functions were given to call",
                           "tool_choice");
  }
  if (mode == Mode::kNamed) {
    bool known = false;
    for (const ToolDefinition& tool : params.tools) {
      known = known || tool.name == params.tool_choice.name;
    }
    if (!known) {
      return InvalidArgument(
          "tool_choice names the function '" + params.tool_choice.name + "', which is not in tools",
          std::string(name_param));
    }
  }
  return {};
}

Status ParseTools(const Json& request, GenerationParams& params) {
  if (auto tools = ParseToolList(request, params); !tools) return tools;
  if (auto choice = ParseToolChoiceField(request, params); !choice) return choice;
  return ReadParallelToolCalls(request, params);
}

Status ReadParallelToolCalls(const Json& request, GenerationParams& params) {
  // Accepted without tools too (OpenAI refuses that; clients that always send it exist, and
  // without tools there is nothing it could change).
  const Json* parallel = FindField(request, "parallel_tool_calls");
  if (parallel == nullptr) return {};
  if (!parallel->is_boolean()) {
    return InvalidArgument("parallel_tool_calls must be true or false, got " + Describe(*parallel),
                           "parallel_tool_calls");
  }
  params.parallel_tool_calls = parallel->get<bool>();
  return {};
}

Result<ResponseFormat> ReadFormat(const Json& format, const std::string& param,
                                  std::string_view nested) {
  const Json* type = format.is_object() ? FindField(format, "type") : nullptr;
  if (type == nullptr || !type->is_string()) {
    return InvalidArgument(
        param + " must be {\"type\": \"text\" | \"json_object\" | \"json_schema\"}, got " +
            Describe(format),
        param);
  }
  using Type = ResponseFormat::Type;
  ResponseFormat out;
  const auto& name = type->get_ref<const std::string&>();
  if (name == "text") {
    out.type = Type::kText;
  } else if (name == "json_object") {
    out.type = Type::kJsonObject;
  } else if (name == "json_schema") {
    const Json* spec = nested.empty() ? &format : FindField(format, nested);
    const std::string at = nested.empty() ? param : param + "." + std::string(nested);
    if (spec == nullptr || !spec->is_object()) {
      return InvalidArgument(at + " must be an object with name and schema, got " +
                                 (spec != nullptr ? Describe(*spec) : std::string("nothing")),
                             at);
    }
    out.type = Type::kJsonSchema;
    auto schema_name = ReadName(*spec, at + ".name", "schema");
    if (!schema_name) return std::unexpected(schema_name.error());
    out.name = std::move(*schema_name);
    auto schema = ReadSchema(*spec, "schema", at + ".schema");
    if (!schema) return std::unexpected(schema.error());
    out.schema = std::move(*schema);
    if (auto strict = ReadStrict(*spec, at + ".strict", out.strict); !strict) {
      return std::unexpected(strict.error());
    }
  } else {
    return InvalidArgument(param +
                               ".type must be \"text\", \"json_object\" or \"json_schema\", got '" +
                               Truncated(name) + "'",
                           param + ".type");
  }
  return out;
}

Status ParseResponseFormat(const Json& request, GenerationParams& params) {
  const Json* format = FindField(request, "response_format");
  if (format == nullptr) return {};
  auto parsed = ReadFormat(*format, "response_format", "json_schema");
  if (!parsed) return std::unexpected(parsed.error());
  params.response_format = std::move(*parsed);
  return {};
}

Result<std::vector<engine::ToolCall>> ParseAssistantToolCalls(const Json& message,
                                                              const std::string& where) {
  std::vector<engine::ToolCall> out;
  const Json* calls = FindField(message, "tool_calls");
  if (calls == nullptr) return out;
  const std::string param = where + ".tool_calls";
  if (!calls->is_array()) {
    return InvalidArgument(param + " must be an array, got " + Describe(*calls), param);
  }
  for (std::size_t i = 0; i < calls->size(); ++i) {
    const Json& call = (*calls)[i];
    const std::string at = param + "[" + std::to_string(i) + "]";
    const Json* id = call.is_object() ? FindField(call, "id") : nullptr;
    const Json* type = call.is_object() ? FindField(call, "type") : nullptr;
    const Json* function = call.is_object() ? FindField(call, "function") : nullptr;
    if (id == nullptr || !id->is_string() || type == nullptr || *type != "function" ||
        function == nullptr || !function->is_object()) {
      return InvalidArgument(
          at + " must be {\"id\": ..., \"type\": \"function\", \"function\": {\"name\": ..., "
               "\"arguments\": ...}}",
          at);
    }
    engine::ToolCall parsed;
    parsed.id = id->get<std::string>();
    auto name = ReadName(*function, at + ".function.name", "function");
    if (!name) return std::unexpected(name.error());
    parsed.name = std::move(*name);
    const Json* arguments = FindField(*function, "arguments");
    if (arguments == nullptr || !arguments->is_string()) {
      return InvalidArgument(at + ".function.arguments must be a string of JSON", at + ".function."
                                                                                       "arguments");
    }
    parsed.arguments = arguments->get<std::string>();
    // Templates render the arguments as JSON: text that is not a JSON object cannot be shown
    // to the model as the call it made.
    if (!ParseJsonObject(parsed.arguments)) {
      return InvalidArgument(at + ".function.arguments must be the JSON text of an object",
                             at + ".function.arguments");
    }
    out.push_back(std::move(parsed));
  }
  return out;
}

}  // namespace ember::api
