// Drives the console page in Debian's headless Chromium (playwright-core) against a running
// ember: the live view lists in-flight requests, clicking one opens its timeline, a search by
// request id finds a finished request, and a prompt with HTML in it shows as text. Run by
// tests/browser/test_console_page.py:  node console/e2e/check.mjs PORT SCREENSHOT_DIR
import { chromium } from "playwright-core";

const [port, shots] = process.argv.slice(2);
const base = `http://127.0.0.1:${port}`;
const HTML_PROMPT = "<script>window.__pwned=1</script><b>bold</b> Once upon a time";

function complete(id, prompt, maxTokens) {
  return fetch(`${base}/v1/completions`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "x-request-id": id },
    body: JSON.stringify({ prompt, max_tokens: maxTokens, temperature: 0, stream: true }),
  }).then((r) => r.text());
}

function check(ok, what) {
  if (!ok) throw new Error(`console check failed: ${what}`);
}

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const problems = [];
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("console", (m) => { if (m.type() === "error") problems.push(m.text()); });
  page.on("pageerror", (e) => problems.push(String(e)));
  page.on("response", (r) => { if (r.status() >= 400) problems.push(`${r.status()} ${r.url()}`); });
  await page.goto(`${base}/console`);
  await page.waitForSelector("#feed-status:text('live')");

  // A short load: three long requests and one whose prompt is markup.
  const load = ["load-1", "load-2", "load-3"].map((id) => complete(id, "Once upon a time", 60));
  load.push(complete("html-1", HTML_PROMPT, 4));

  // The live view lists the in-flight requests; clicking one opens its timeline.
  const live = page.locator('#live tbody tr[data-id="load-1"]');
  await live.waitFor({ timeout: 15000 });
  await page.screenshot({ path: `${shots}/console-live.png`, fullPage: true });
  await live.click();
  await page.waitForSelector("#timeline:not([hidden])");
  check((await page.textContent("#timeline-id")) === "load-1", "timeline opens for the clicked request");
  check(await page.locator('#timeline-events tr[data-event="arrival"]').count() === 1,
        "the timeline starts with the arrival");

  await Promise.all(load);
  // A search by request id finds a finished request, with its steps.
  await page.fill('#search input[name="id"]', "load-2");
  await page.click('#search button[type="submit"]');
  await page.waitForFunction(() => document.getElementById("timeline-id")?.textContent === "load-2");
  await page.locator('#timeline-events tr[data-event="completed"]').waitFor();
  const decodes = await page.locator('#timeline-events tr[data-event="decode"]').count();
  check(decodes > 0, `load-2's timeline shows its decode steps (saw ${decodes})`);
  const sharedWith = await page.locator('#timeline-events a.request').allTextContents();
  check(sharedWith.some((id) => id === "load-1" || id === "load-3"),
        `load-2's steps name the requests they shared (saw ${sharedWith.slice(0, 5)})`);
  await page.screenshot({ path: `${shots}/console-timeline.png`, fullPage: true });

  // The charts draw the last points (the test server makes one a second): seven charts, the
  // requests by status naming the finished ones, the tokens per second above zero.
  await page.waitForFunction(() =>
    [...document.querySelectorAll('#charts [data-chart="status"] .u-legend .u-series')]
      .some((s) => s.textContent?.includes("finished")), null, { timeout: 20000 });
  const canvases = await page.locator("#charts .chart canvas").evaluateAll((cs) =>
    cs.map((c) => c.width * c.height));
  check(canvases.length === 7 && canvases.every((a) => a > 0),
        `seven charts drawn (saw ${canvases.length})`);
  const peak = await page.evaluate(async () => {
    const h = await (await fetch("/admin/history")).json();
    return Math.max(...h.points.map((p) => p.tokens_per_s));
  });
  check(peak > 0, `the tokens per second chart has tokens (peak ${peak})`);
  await page.locator("#charts").screenshot({ path: `${shots}/console-charts.png` });

  // A prompt with HTML in it is shown as text: nothing of it runs or renders.
  await page.fill('#search input[name="id"]', "html-1");
  await page.click('#search button[type="submit"]');
  await page.waitForFunction(() => document.getElementById("timeline-id")?.textContent === "html-1");
  const shown = await page.textContent("#timeline-prompt");
  check(shown.includes("<script>window.__pwned=1</script><b>bold</b>"), "the prompt shows as text");
  check(await page.locator("#timeline-prompt b, #timeline-prompt script").count() === 0,
        "no element was made from the prompt");
  check(await page.evaluate(() => window.__pwned === undefined), "the prompt's script did not run");
  await page.screenshot({ path: `${shots}/console-html-prompt.png`, fullPage: true });
  check(problems.length === 0, `no errors on the page: ${problems.join("; ")}`);
  console.log("console check passed");
} finally {
  await browser.close();
}
