"""The console page (docs/console.md) in a real browser: Debian's headless Chromium driven by
playwright-core (console/e2e/check.mjs) against the real binary under a short load. The page
and its npm packages come from scripts/console.sh (cached outside the clone); screenshots are
kept in the build directory (console-screenshots/)."""
import os
import re
import subprocess
import unittest

from harness import Server

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHOTS = os.path.join(os.environ.get("EMBER_BUILD_DIR", "build/release"), "console-screenshots")


def build_console():
    return subprocess.run([os.path.join(REPO, "scripts", "console.sh")], check=True,
                          capture_output=True, text=True, timeout=600).stdout.strip()


@unittest.skipUnless(os.path.exists("/usr/bin/chromium"),
                     "needs Debian's chromium: scripts/console.sh --browser installs it")
class ConsolePageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dist = build_console()
        cls.server = Server("--parallel", "4", "--ctx-size", "1024", "--console-dir", cls.dist,
                            "--console-keep-text", "--console-interval", "200ms",
                            "--console-history-step", "1s",
                            "--debug-step-delay", "30ms")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_page_is_served_with_a_policy_that_forbids_inline_and_remote_script(self):
        status, body, headers = self.server.get("/console")
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "text/html; charset=utf-8")
        csp = headers["Content-Security-Policy"]
        self.assertIn("default-src 'none'", csp)
        self.assertIn("script-src 'self';", csp)
        self.assertNotIn("unsafe-inline", csp)
        self.assertEqual(headers["X-Content-Type-Options"], "nosniff")
        html = body.decode()
        # Every script is a file of the page's own: none inline, none remote.
        scripts = re.findall(r"<script[^>]*>", html)
        self.assertTrue(scripts)
        for tag in scripts:
            self.assertRegex(tag, r'src="/console/assets/[^"]+\.js"')
        self.assertNotRegex(html, r"https?://")
        asset = re.search(r'src="(/console/assets/[^"]+\.js)"', html).group(1)
        status, _, headers = self.server.get(asset)
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/javascript"))
        self.assertEqual(self.server.get("/console/../README.md")[0], 404)

    def test_live_view_timeline_search_and_escaping_in_a_browser(self):
        os.makedirs(SHOTS, exist_ok=True)
        run = subprocess.run(["node", os.path.join(REPO, "console", "e2e", "check.mjs"),
                              str(self.server.port), SHOTS],
                             capture_output=True, text=True, timeout=300)
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        for name in ["console-live.png", "console-timeline.png", "console-html-prompt.png",
                     "console-charts.png"]:
            self.assertGreater(os.path.getsize(os.path.join(SHOTS, name)), 10_000)


if __name__ == "__main__":
    unittest.main()
