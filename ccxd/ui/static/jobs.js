// The live jobs view: running and queued jobs updated twice a second (job.list), with
// sparklines of their resource samples and the buttons that act on them.

import { commandText, elapsed, fmtBytes, fmtDuration, fmtUsd, h, isClaude, spark, stateClass, stateText } from "./util.js";

const POLL_MS = 500;
const SAMPLES = 60;
const ACTIVE = new Set(["queued", "starting", "running", "paused"]);
const NARROW_HIDDEN = new Set([3, 4, 5, 8, 9]); // kind, group, node, memory, cost: not on a phone

/** Start a new job like ``job`` (shell jobs; a Claude job's prompt is not in its record). */
export function retryParams(job) {
  const p = { command: job.command, cwd: job.cwd };
  for (const k of ["session", "shell", "group"]) if (job[k]) p[k] = job[k];
  if (job.env && Object.keys(job.env).length) p.env = job.env;
  if (job.tags?.length) p.tags = job.tags;
  return p;
}

export class JobsView {
  constructor(app) {
    this.app = app;
    this.rows = new Map();
    this.samples = new Map(); // job id -> {t, cpu: [], mem: []}
    this.filters = { state: "active", session: "", group: "", tag: "" };
  }

  render(root) {
    const f = this.filters;
    const field = (name, label, input) => {
      input.value = f[name];
      const changed = () => { f[name] = input.value; this.refresh(); };
      input.addEventListener("input", changed);
      input.addEventListener("change", changed);
      return h("label", {}, label, input);
    };
    const state = h("select", { name: "state" },
      ...[["active", "running and queued"], ["running", "running"], ["queued", "queued"], ["paused", "paused"],
        ["finished", "finished"], ["all", "all in memory"]].map(([v, t]) => h("option", { value: v }, t)));
    this.tbody = h("tbody");
    this.empty = h("p", { class: "empty" }, "No jobs match.");
    root.replaceChildren(
      h("h1", {}, "Jobs"),
      h("form", { class: "filters", role: "search", onsubmit: (e) => e.preventDefault() },
        field("state", "State", state),
        field("session", "Session", h("input", { type: "text", name: "session" })),
        field("group", "Group", h("input", { type: "text", name: "group" })),
        field("tag", "Tag", h("input", { type: "text", name: "tag" }))),
      h("div", { class: "table-wrap" }, h("table", { id: "jobs" },
        h("thead", {}, h("tr", {}, ...["State", "Job", "Command", "Kind", "Group", "Node", "Elapsed", "CPU", "Memory", "Cost", "Actions"]
          .map((t, i) => h("th", { scope: "col", class: `${NARROW_HIDDEN.has(i) ? "hide-narrow" : ""}${i === 5 ? " col-node" : ""}` }, t)))),
        this.tbody)),
      this.empty);
    this.rows.clear();
    this.refresh();
    this.timer = setInterval(() => this.refresh(), POLL_MS);
  }

  leave() {
    clearInterval(this.timer);
  }

  async refresh() {
    if (!this.app.rpc.opened || document.hidden) return; // a hidden tab asks nothing
    if (this.busy) { this.again = true; return; } // a filter changed during a call: ask again after it
    this.busy = true;
    this.again = false;
    try {
      const f = this.filters;
      const params = { limit: 500 };
      if (f.session) params.session = f.session;
      if (!["active", "all"].includes(f.state)) params.state = f.state;
      const { jobs } = await this.app.rpc.call("job.list", params);
      this.update(jobs.filter((j) =>
        (f.state !== "active" || ACTIVE.has(j.state)) &&
        (!f.group || (j.group || "") === f.group) &&
        (!f.tag || (j.tags || []).includes(f.tag))));
    } catch { /* reconnecting: the next tick tries again */ } finally {
      this.busy = false;
    }
    if (this.again) this.refresh();
  }

  update(jobs) {
    const seen = new Set();
    let prev = null;
    for (const job of jobs) {
      seen.add(job.id);
      this.sample(job);
      let row = this.rows.get(job.id);
      if (!row) {
        row = this.makeRow(job);
        this.rows.set(job.id, row);
      }
      this.fill(row, job);
      // Keep the daemon's order without moving rows that are in place (focus stays put).
      const want = prev ? prev.tr.nextSibling : this.tbody.firstChild;
      if (want !== row.tr) this.tbody.insertBefore(row.tr, want);
      prev = row;
    }
    for (const [id, row] of this.rows) {
      if (!seen.has(id)) { row.tr.remove(); this.rows.delete(id); }
    }
    this.empty.classList.toggle("hidden", jobs.length > 0);
    // The node column only when a fleet shares the store (jobs of more than one node).
    this.tbody.parentElement.classList.toggle("one-node", new Set(jobs.map((j) => j.node)).size <= 1);
  }

  sample(job) {
    const u = job.usage;
    if (!u) return;
    let s = this.samples.get(job.id);
    if (!s) { s = { t: 0, cpuSeconds: 0, cpu: [], mem: [] }; this.samples.set(job.id, s); }
    if (u.sampled_at === s.t) return;
    // CPU % over the time between two samples (one core = 100).
    const pct = s.t && u.sampled_at > s.t ? ((u.cpu_seconds - s.cpuSeconds) / (u.sampled_at - s.t)) * 100 : (u.cpu_percent ?? 0);
    s.t = u.sampled_at; s.cpuSeconds = u.cpu_seconds;
    s.last = Math.max(0, pct);
    s.cpu.push(s.last); s.mem.push(u.memory ?? 0);
    if (s.cpu.length > SAMPLES) { s.cpu.shift(); s.mem.shift(); }
  }

  makeRow(job) {
    const rpc = this.app.rpc;
    const act = (method, label) => async () => {
      try { await rpc.call(method, { job_id: job.id }); this.refresh(); } catch (e) { this.app.toast(`${label} ${job.id}: ${e.message}`); }
    };
    const r = {
      tr: h("tr", { "data-job": job.id }),
      state: h("span", { class: "state" }),
      cmd: h("td", { class: "cmd mono" }),
      cpu: h("canvas", { class: "spark", role: "img" }),
      mem: h("canvas", { class: "spark", role: "img" }),
      cells: {},
      out: h("button", { type: "button", class: "output", onclick: () => this.app.openOutput(r.job), "aria-label": `Show output of job ${job.id}` }, "output"),
      cancel: h("button", { type: "button", class: "danger cancel", onclick: act("job.cancel", "cancel"), "aria-label": `Cancel job ${job.id}` }, "cancel"),
      pause: h("button", { type: "button", class: "pause" }),
      retry: h("button", { type: "button", class: "retry", "aria-label": `Retry job ${job.id}` }, "retry"),
    };
    r.pause.addEventListener("click", () => act(r.job.state === "paused" ? "job.resume" : "job.pause", "pause/resume")());
    r.retry.addEventListener("click", async () => {
      try {
        const started = await rpc.call("job.start", retryParams(r.job));
        this.app.toast(`started ${started.id}`);
        this.refresh();
      } catch (e) { this.app.toast(`retry ${job.id}: ${e.message}`); }
    });
    for (const k of ["kind", "group", "node", "elapsed", "cost"]) r.cells[k] = h("td", { class: k === "elapsed" ? null : `hide-narrow col-${k}` });
    r.tr.append(
      h("td", {}, r.state),
      h("td", { class: "mono" }, h("a", { href: `#/job/${job.id}` }, job.id)),
      r.cmd, r.cells.kind, r.cells.group, r.cells.node, r.cells.elapsed,
      h("td", {}, r.cpu), h("td", { class: "hide-narrow" }, r.mem), r.cells.cost,
      h("td", { class: "actions" }, r.out, r.cancel, r.pause, r.retry));
    return r;
  }

  fill(r, job) {
    r.job = job;
    r.state.textContent = stateText(job);
    r.state.className = `state ${stateClass(job)}`;
    const cmd = commandText(job);
    if (r.cmd.textContent !== cmd) { r.cmd.textContent = cmd; r.cmd.title = cmd; }
    r.cells.kind.textContent = isClaude(job) ? "claude" : "shell";
    r.cells.group.textContent = job.group || "";
    r.cells.node.textContent = job.node || "";
    r.cells.elapsed.textContent = fmtDuration(elapsed(job));
    r.cells.cost.textContent = isClaude(job) ? fmtUsd(job.claude.cost_usd) : "";
    const s = this.samples.get(job.id);
    const u = job.usage;
    r.cpu.setAttribute("aria-label", u && s ? `CPU ${s.last.toFixed(0)}%` : "no CPU sample yet");
    r.mem.setAttribute("aria-label", u ? `memory ${fmtBytes(u.memory)}` : "no memory sample yet");
    r.cpu.title = r.cpu.getAttribute("aria-label"); r.mem.title = r.mem.getAttribute("aria-label");
    if (s) { spark(r.cpu, s.cpu, "#6cb6ff", 100); spark(r.mem, s.mem, "#5fd38d"); }
    const live = job.state !== "finished";
    r.cancel.disabled = !live;
    r.pause.disabled = !(job.state === "running" || job.state === "paused");
    r.pause.textContent = job.state === "paused" ? "resume" : "pause";
    r.pause.setAttribute("aria-label", `${job.state === "paused" ? "Resume" : "Pause"} job ${job.id}`);
    r.retry.disabled = live || isClaude(job);
    r.retry.title = isClaude(job) ? "a Claude job is retried with ccxctl claude (its prompt is not in the record)" : "";
  }
}
