// Plots: durations over time per command signature (with the timeout estimate), daily
// Claude cost and tokens, and outcome counts; drawn with uPlot from history.

import uPlot from "./vendor/uplot-1.6.32/uPlot.esm.js";
import { fmtDuration, h } from "./util.js";

const DAY = 86400;
const PLACEHOLDERS = { "<n>": "\\d+(?:\\.\\d+)?", "<str>": ".+?", "<uuid>": "[0-9a-fA-F-]{36}", "<hex>": "[0-9a-fA-F]+",
  "<tmp>": "\\S+", "<date>": "\\d{4}-\\d{2}-\\d{2}", "<time>": "[\\d:.]+" };

/** A regular expression (Python syntax) finding the commands of a signature (ccxd/history/signature.py). */
export function signaturePattern(sig) {
  return sig.split(/(<n>|<str>|<uuid>|<hex>|<tmp>|<date>|<time>|\s+)/).map((part) => {
    if (!part) return "";
    if (PLACEHOLDERS[part]) return PLACEHOLDERS[part];
    if (/^\s+$/.test(part)) return "\\s+";
    return part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  }).join("");
}

function width(el) {
  return Math.max(280, Math.min(el.clientWidth || 800, 1100) - 20);
}

const FROM_ZERO = (u, min, max) => [0, max > 0 ? max * 1.1 : 1];
const AXIS = { stroke: "#8b93a3", grid: { stroke: "#2a303c" }, ticks: { stroke: "#2a303c" } };

export class StatsView {
  constructor(app) {
    this.app = app;
    this.plots = [];
  }

  render(root) {
    this.sigBody = h("tbody");
    this.durBox = h("div", { class: "plot", id: "plot-durations", role: "img", "aria-label": "Durations over time" });
    this.costBox = h("div", { class: "plot", id: "plot-claude", role: "img", "aria-label": "Daily Claude cost and tokens" });
    this.outBox = h("div", { class: "plot", id: "plot-outcomes", role: "img", "aria-label": "Outcome counts" });
    this.durTitle = h("h2", {}, "Durations");
    root.replaceChildren(h("h1", {}, "Stats"),
      this.durTitle, this.durBox,
      h("div", { class: "grid2" },
        h("section", {}, h("h2", {}, "Claude cost and tokens per day (30 days)"), this.costBox),
        h("section", {}, h("h2", {}, "Outcomes (30 days)"), this.outBox)),
      h("h2", {}, "Command signatures"),
      h("div", { class: "table-wrap" }, h("table", { id: "signatures" }, h("thead", {}, h("tr", {},
        ...["Signature", "Runs", "Success", "p50", "p95", "Timeout estimate", ""].map((t) => h("th", { scope: "col" }, t)))),
      this.sigBody)));
    this.load();
  }

  leave() {
    for (const p of this.plots) p.destroy();
    this.plots = [];
  }

  async load() {
    const rpc = this.app.rpc;
    try {
      const [{ signatures }, { jobs }] = await Promise.all([
        rpc.call("history.stats", { limit: 100 }),
        rpc.call("history.list", { since: Date.now() / 1000 - 30 * DAY, limit: 10000 }),
      ]);
      this.sigBody.replaceChildren(...signatures.map((s) => h("tr", {},
        h("td", { class: "cmd mono", title: s.signature }, s.signature), h("td", {}, s.count),
        h("td", {}, `${Math.round(s.success_rate * 100)}%`), h("td", {}, fmtDuration(s.p50)), h("td", {}, fmtDuration(s.p95)),
        h("td", {}, s.estimate ? fmtDuration(s.estimate) : "–"),
        h("td", {}, h("button", { type: "button", onclick: () => this.durations(s), "aria-label": `Plot durations of ${s.signature}` }, "plot")))));
      if (signatures.length) this.durations(signatures[0]);
      else this.durBox.replaceChildren(h("p", { class: "empty" }, "No finished runs yet."));
      this.claude(jobs);
      this.outcomes(jobs);
    } catch (e) {
      this.durBox.replaceChildren(h("p", { class: "err" }, `stats: ${e.message}`));
    }
  }

  plot(box, opts, data) {
    box.replaceChildren();
    const p = new uPlot({ width: width(box), height: 240, ...opts }, data, box);
    this.plots.push(p);
    box.dataset.points = String(data[0].length);
    return p;
  }

  async durations(sig) {
    this.durTitle.textContent = `Durations of ${sig.signature}`;
    const { jobs } = await this.app.rpc.call("history.list", { grep: signaturePattern(sig.signature), status: "finished", limit: 1000 });
    const runs = jobs.filter((j) => j.duration !== undefined && j.duration !== null && j.started_at)
      .sort((a, b) => a.started_at - b.started_at);
    const xs = runs.map((j) => j.started_at);
    const est = sig.estimate ?? null;
    this.plot(this.durBox, {
      // Log scale: a 3 ms run and a one-hour estimate on the same plot.
      scales: { x: { time: true }, y: { distr: 3, log: 10 } },
      axes: [AXIS, { ...AXIS, label: "seconds (log)" }],
      series: [{}, { label: "duration (s)", stroke: "#6cb6ff", points: { show: true, size: 6 }, width: 1 },
        { label: "timeout estimate (s)", stroke: "#f0b54a", dash: [6, 4], width: 1.5, points: { show: false } },
        { label: "p95 (s)", stroke: "#5fd38d", dash: [2, 3], width: 1, points: { show: false } }],
    }, [xs, runs.map((j) => j.duration), xs.map(() => est), xs.map(() => sig.p95 ?? null)]);
  }

  claude(jobs) {
    const days = new Map();
    for (const j of jobs) {
      if (!j.claude) continue;
      const d = new Date((j.finished_at || j.queued_at) * 1000); d.setHours(0, 0, 0, 0);
      const k = d.getTime() / 1000;
      const v = days.get(k) || { cost: 0, tokens: 0 };
      v.cost += j.claude.cost_usd || 0;
      v.tokens += (j.claude.input_tokens || 0) + (j.claude.output_tokens || 0);
      days.set(k, v);
    }
    if (!days.size) { this.costBox.replaceChildren(h("p", { class: "empty" }, "No Claude jobs in the last 30 days.")); return; }
    const xs = [...days.keys()].sort((a, b) => a - b);
    this.plot(this.costBox, {
      scales: { x: { time: true }, usd: { range: FROM_ZERO }, tok: { range: FROM_ZERO } },
      axes: [AXIS, { ...AXIS, scale: "usd", label: "USD" }, { ...AXIS, scale: "tok", side: 1, label: "tokens", grid: { show: false } }],
      series: [{}, { label: "cost (USD)", scale: "usd", stroke: "#f0b54a", fill: "rgba(240,181,74,.35)", paths: uPlot.paths.bars({ size: [0.5, 40] }) },
        { label: "tokens", scale: "tok", stroke: "#6cb6ff", width: 2 }],
    }, [xs, xs.map((k) => days.get(k).cost), xs.map((k) => days.get(k).tokens)]);
  }

  outcomes(jobs) {
    const counts = new Map();
    for (const j of jobs) {
      if (j.state !== "finished") continue;
      const k = j.reason === "exited" ? (j.exit_code === 0 ? "success" : "failed") : j.reason || "finished";
      counts.set(k, (counts.get(k) || 0) + 1);
    }
    if (!counts.size) { this.outBox.replaceChildren(h("p", { class: "empty" }, "No finished jobs in the last 30 days.")); return; }
    const names = [...counts.keys()];
    this.plot(this.outBox, {
      scales: { x: { time: false, range: [-0.5, names.length - 0.5] }, y: { range: FROM_ZERO } },
      axes: [{ ...AXIS, values: (u, splits) => splits.map((v) => names[v] ?? ""), splits: () => names.map((_, i) => i) },
        { ...AXIS, label: "jobs" }],
      series: [{}, { label: "jobs", stroke: "#5fd38d", fill: "rgba(95,211,141,.4)", paths: uPlot.paths.bars({ size: [0.6, 80] }), points: { show: false } }],
      legend: { show: false },
    }, [names.map((_, i) => i), names.map((n) => counts.get(n))]);
  }
}
