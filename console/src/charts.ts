// The console's charts over the last hour, drawn with uPlot from GET /admin/history
// (docs/console.md): one point per --console-history-step. Series whose set changes (an
// outcome or a tenant appears) rebuild their chart; otherwise only the data is replaced.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

type Json = Record<string, any>;
type Line = { label: string; values: (number | null)[] };
type ChartSpec = { id: string; title: string; unit: string; lines: (points: Json[], stepS: number) => Line[] };

const COLORS = ["#1558d6", "#d93025", "#188038", "#e37400", "#9334e6", "#12b5cb", "#5f6368", "#b80672"];

function keysOf(points: Json[], field: string): string[] {
  const keys = new Set<string>();
  for (const p of points) for (const k of Object.keys(p[field] ?? {})) keys.add(k);
  return [...keys].sort();
}

const SPECS: ChartSpec[] = [
  {
    id: "ttft", title: "Time to first token", unit: "ms",
    lines: (ps) => [
      { label: "p50", values: ps.map((p) => p.ttft_ms.p50) },
      { label: "p99", values: ps.map((p) => p.ttft_ms.p99) },
    ],
  },
  {
    id: "itl", title: "Inter-token latency", unit: "ms",
    lines: (ps) => [
      { label: "p50", values: ps.map((p) => p.itl_ms.p50) },
      { label: "p99", values: ps.map((p) => p.itl_ms.p99) },
    ],
  },
  { id: "tps", title: "Output tokens per second", unit: "tok/s",
    lines: (ps) => [{ label: "tok/s", values: ps.map((p) => p.tokens_per_s) }] },
  { id: "queue", title: "Queue depth (most waiting)", unit: "requests",
    lines: (ps) => [{ label: "waiting", values: ps.map((p) => p.queue_max) }] },
  { id: "kv", title: "KV cache use (fullest model)", unit: "%",
    lines: (ps) => [{ label: "KV used", values: ps.map((p) => Math.round(p.kv_used_max * 1000) / 10) }] },
  {
    id: "status", title: "Requests by status", unit: "per point",
    lines: (ps) => keysOf(ps, "outcomes").map((o) => ({
      label: o, values: ps.map((p) => p.outcomes[o] ?? 0),
    })),
  },
  {
    id: "cost", title: "Cost per tenant (list price)", unit: "$/hour",
    lines: (ps, stepS) => keysOf(ps, "cost_microdollars").map((t) => ({
      label: t || "(open)",
      values: ps.map((p) => ((p.cost_microdollars[t] ?? 0) * (3600 / stepS)) / 1e6),
    })),
  },
];

const charts = new Map<string, { plot: uPlot; labels: string }>();

function build(spec: ChartSpec, host: HTMLElement, lines: Line[], data: uPlot.AlignedData): uPlot {
  const opts: uPlot.Options = {
    title: `${spec.title} (${spec.unit})`,
    width: Math.max(320, Math.min(560, host.clientWidth || 480)),
    height: 200,
    series: [{}, ...lines.map((l, i) => ({ label: l.label, stroke: COLORS[i % COLORS.length], width: 1.5 }))],
    axes: [{}, { size: 60 }],
    scales: { x: { time: true } },
  };
  return new uPlot(opts, data, host);
}

export function renderHistory(history: Json, container: HTMLElement): void {
  const points = history.points as Json[];
  const stepS = history.step_seconds as number;
  const xs = points.map((p) => p.end_unix_s as number);
  for (const spec of SPECS) {
    let host = container.querySelector<HTMLElement>(`[data-chart="${spec.id}"]`);
    if (!host) {
      host = document.createElement("div");
      host.className = "chart";
      host.dataset.chart = spec.id;
      container.append(host);
    }
    const lines = spec.lines(points, stepS);
    const data = [xs, ...lines.map((l) => l.values)] as uPlot.AlignedData;
    const labels = lines.map((l) => l.label).join("\u0000");
    const existing = charts.get(spec.id);
    if (existing && existing.labels === labels) {
      existing.plot.setData(data);
      continue;
    }
    existing?.plot.destroy();
    host.replaceChildren();
    charts.set(spec.id, { plot: build(spec, host, lines, data), labels });
  }
  container.dataset.points = String(points.length);
}
