// ember's console: the live view from GET /admin/events and request timelines from
// GET /admin/requests (docs/console.md). Every value from the server reaches the page through
// textContent, never as markup, so a prompt holding "<script>" shows as text.
import "./style.css";
import { renderHistory } from "./charts";

type Json = Record<string, any>;

const keyInput = document.getElementById("key") as HTMLInputElement;
keyInput.value = sessionStorage.getItem("ember-admin-key") ?? "";

function headers(): HeadersInit {
  const key = keyInput.value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

// A table cell, row or any element with text children (strings become text nodes).
function el(tag: string, ...children: (Node | string | number | null | undefined)[]): HTMLElement {
  const e = document.createElement(tag);
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(typeof c === "string" ? c : c instanceof Node ? c : String(c));
  }
  return e;
}

function row(cells: (Node | string | number | null | undefined)[]): HTMLTableRowElement {
  const tr = document.createElement("tr");
  for (const c of cells) tr.append(el("td", c ?? "–"));
  return tr;
}

function body(id: string): HTMLTableSectionElement {
  return document.querySelector(`#${id} tbody`) as HTMLTableSectionElement;
}

function requestLink(id: string): HTMLElement {
  const a = el("a", id);
  a.className = "request";
  a.dataset.id = id;
  a.addEventListener("click", (ev) => {
    ev.stopPropagation();
    void openTimeline(id);
  });
  return a;
}

function mib(bytes: number): string {
  return `${(bytes / (1 << 20)).toFixed(1)} MiB`;
}

// --- Live view --------------------------------------------------------------------------

function renderSnapshot(s: Json): void {
  const models = body("models");
  models.replaceChildren(
    ...(s.models as Json[]).map((m) =>
      row([
        m.id,
        m.state,
        mib(m.memory_bytes ?? 0),
        m.running !== undefined ? `${m.running} / ${m.slots_total}` : null,
        m.waiting,
        m.kv_cells_total ? `${m.kv_cells_used} / ${m.kv_cells_total}` : null,
      ]),
    ),
  );
  const live = body("live");
  live.replaceChildren(
    ...(s.requests as Json[]).map((r) => {
      const tr = row([
        requestLink(r.id),
        r.tenant || "(open)",
        r.model,
        r.state === "prefill" ? `prefill ${Math.min(r.prefilled, r.prompt_tokens)} of ${r.prompt_tokens}` : r.state,
        r.prompt_tokens,
        r.tokens,
        r.ttft_ms,
        r.tokens_per_s,
        r.age_ms,
      ]);
      tr.className = "clickable";
      tr.dataset.id = r.id;
      tr.addEventListener("click", () => void openTimeline(r.id));
      return tr;
    }),
  );
  body("queues").replaceChildren(
    ...(s.queues as Json[]).map((q) => row([q.tenant || "(open)", q.priority, q.waiting])),
  );
}

function recentRow(r: Json): HTMLTableRowElement {
  const tr = row([
    requestLink(r.id),
    r.tenant || "(open)",
    r.model,
    r.outcome,
    r.finish_reason,
    `${r.usage.prompt_tokens} / ${r.usage.completion_tokens}`,
    r.ttft_us,
    r.duration_us,
    r.cost_microdollars,
  ]);
  tr.dataset.id = r.id;
  return tr;
}

function onRequestEvent(r: Json): void {
  // It is no longer in flight, whatever the last snapshot said.
  body("live").querySelector(`tr[data-id="${CSS.escape(r.id)}"]`)?.remove();
  const recent = body("recent");
  recent.prepend(recentRow(r));
  while (recent.rows.length > 200) recent.deleteRow(-1);
}

const status = document.getElementById("feed-status") as HTMLElement;

// Server-sent events read with fetch (EventSource cannot send the Authorization header).
async function follow(): Promise<void> {
  for (;;) {
    try {
      const res = await fetch("/admin/events", { headers: headers() });
      if (!res.ok || !res.body) {
        status.textContent = `feed: HTTP ${res.status}${res.status === 401 ? " (enter the admin key)" : ""}`;
        await new Promise((r) => setTimeout(r, 2000));
        continue;
      }
      status.textContent = "live";
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end: number;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let event = "message";
          let data = "";
          for (const line of frame.split("\n")) {
            if (line.startsWith("event: ")) event = line.slice(7);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          const parsed = JSON.parse(data) as Json;
          if (event === "snapshot") renderSnapshot(parsed);
          else if (event === "request") onRequestEvent(parsed);
          else if (event === "dropped") status.textContent = `feed dropped: ${parsed.reason}`;
        }
      }
      status.textContent = "reconnecting…";
    } catch (e) {
      status.textContent = `feed error: ${String(e)}`;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

// --- Search and timelines ---------------------------------------------------------------

const searchError = document.getElementById("search-error") as HTMLElement;

async function getJson(path: string): Promise<Json> {
  const res = await fetch(path, { headers: headers() });
  const json = (await res.json()) as Json;
  if (!res.ok) throw new Error(json.error?.message ?? `HTTP ${res.status}`);
  return json;
}

async function openTimeline(id: string): Promise<void> {
  searchError.textContent = "";
  let r: Json;
  try {
    r = await getJson(`/admin/requests/${encodeURIComponent(id)}`);
  } catch (e) {
    searchError.textContent = String((e as Error).message);
    return;
  }
  const section = document.getElementById("timeline") as HTMLElement;
  section.hidden = false;
  (document.getElementById("timeline-id") as HTMLElement).textContent = r.id;
  // A request still in flight has no outcome yet; its steps come when it completes.
  const facts: [string, unknown][] = r.in_flight
    ? [
        ["state", `${r.state} (in flight: steps are shown once it completes)`],
        ["tenant", r.tenant || "(open)"],
        ["model", r.model],
        ["endpoint", r.endpoint],
        ["usage so far", `${r.usage.prompt_tokens} prompt, ${r.usage.completion_tokens} completion`],
      ]
    : [
        ["response id", r.response_id],
        ["tenant", r.tenant || "(open)"],
        ["model", r.model],
        ["endpoint", r.endpoint],
        ["outcome", `${r.outcome} (HTTP ${r.http_status})`],
        ["finish reason", r.finish_reason],
        ["usage", `${r.usage.prompt_tokens} prompt (${r.usage.cached_tokens} cached), ${r.usage.completion_tokens} completion`],
        ["cost", r.cost_microdollars === null ? null : `${r.cost_microdollars} µ$`],
        ["seed", r.seed],
        ["deterministic", String(r.deterministic)],
        ["system_fingerprint", r.system_fingerprint],
        ["steps", `${r.steps_kept} kept of ${r.steps_total}`],
      ];
  const dl = document.getElementById("timeline-facts") as HTMLElement;
  dl.replaceChildren(...facts.flatMap(([k, v]) => [el("dt", k), el("dd", v === null || v === undefined ? "–" : String(v))]));
  for (const [field, elId] of [["prompt", "timeline-prompt"], ["output", "timeline-output"]] as const) {
    const pre = document.getElementById(elId) as HTMLElement;
    pre.hidden = typeof r[field] !== "string";
    pre.textContent = typeof r[field] === "string" ? `${field}: ${r[field]}` : "";
  }
  body("timeline-events").replaceChildren(
    ...(r.timeline as Json[]).map((e) => {
      const shared = el("span");
      for (const p of (e.shared_with ?? []) as Json[]) {
        shared.append(requestLink(p.id), ` (${p.tokens}) `);
      }
      const tr = row([e.at_us, e.event, e.step, e.tokens, e.took_us, shared]);
      tr.dataset.event = e.event;
      return tr;
    }),
  );
  section.scrollIntoView();
}

document.getElementById("search")?.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = new FormData(ev.target as HTMLFormElement);
  const id = String(form.get("id") ?? "").trim();
  if (id) return openTimeline(id);
  const query = new URLSearchParams();
  for (const k of ["tenant", "model", "status"]) {
    const v = String(form.get(k) ?? "").trim();
    if (v) query.set(k, v);
  }
  try {
    const list = await getJson(`/admin/requests?${query}`);
    body("recent").replaceChildren(...(list.data as Json[]).map(recentRow));
    searchError.textContent = "";
  } catch (e) {
    searchError.textContent = String((e as Error).message);
  }
});

keyInput.addEventListener("change", () => sessionStorage.setItem("ember-admin-key", keyInput.value));

// --- Charts over the last hour -----------------------------------------------------------

const chartsStatus = document.getElementById("charts-status") as HTMLElement;

async function followHistory(): Promise<void> {
  const container = document.getElementById("charts") as HTMLElement;
  for (;;) {
    let stepS = 10;
    try {
      const history = await getJson("/admin/history");
      stepS = history.step_seconds;
      renderHistory(history, container);
      chartsStatus.textContent = `one point per ${stepS} s, ${history.points.length} so far`;
    } catch (e) {
      chartsStatus.textContent = String((e as Error).message);
    }
    await new Promise((r) => setTimeout(r, Math.max(1, Math.min(stepS, 10)) * 1000));
  }
}

void follow();
void followHistory();
