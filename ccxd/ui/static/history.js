// Searchable history (history.list) and a job's record page (job.get).

import { resumeLine } from "./claude.js";
import { retryParams } from "./jobs.js";
import { commandText, fmtBytes, fmtDuration, fmtTime, fmtUsd, h, isClaude, stateClass, stateText } from "./util.js";

const STATUSES = ["", "running", "queued", "finished", "exited", "timeout", "idle_timeout", "cancelled",
  "killed", "failed_to_start", "lost", "oom", "dependency_failed", "budget_exceeded"];
const SINCE = [["", "any time"], ["3600", "last hour"], ["86400", "last day"], ["604800", "last week"], ["2592000", "last 30 days"]];

export class HistoryView {
  constructor(app) {
    this.app = app;
    this.query = { status: "", since: "", grep: "", session: "" };
  }

  render(root) {
    const q = this.query;
    const status = h("select", { name: "status" }, ...STATUSES.map((s) => h("option", { value: s }, s || "any")));
    const since = h("select", { name: "since" }, ...SINCE.map(([v, t]) => h("option", { value: v }, t)));
    const grep = h("input", { type: "search", name: "grep", placeholder: "regular expression" });
    const session = h("input", { type: "text", name: "session" });
    status.value = q.status; since.value = q.since; grep.value = q.grep; session.value = q.session;
    this.tbody = h("tbody");
    this.note = h("p", { class: "empty", role: "status" });
    const form = h("form", { class: "filters", role: "search" },
      h("label", {}, "Status", status), h("label", {}, "Since", since),
      h("label", {}, "Command pattern", grep), h("label", {}, "Session", session),
      h("button", { type: "submit" }, "Search"));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      Object.assign(q, { status: status.value, since: since.value, grep: grep.value, session: session.value });
      this.search();
    });
    root.replaceChildren(h("h1", {}, "History"), form,
      h("div", { class: "table-wrap" }, h("table", { id: "history" },
        h("thead", {}, h("tr", {}, ...["Job", "Status", "Command", "Queued", "Duration", "Output", "Cost"]
          .map((t) => h("th", { scope: "col" }, t)))), this.tbody)), this.note);
    this.search();
  }

  leave() {}

  async search() {
    const q = this.query;
    const p = { limit: 200 };
    if (q.status) p.status = q.status;
    if (q.since) p.since = Date.now() / 1000 - Number(q.since);
    if (q.grep) p.grep = q.grep;
    if (q.session) p.session = q.session;
    this.note.textContent = "searching…";
    try {
      const { jobs } = await this.app.rpc.call("history.list", p);
      this.tbody.replaceChildren(...jobs.map((j) => h("tr", { "data-job": j.id },
        h("td", { class: "mono" }, h("a", { href: `#/job/${j.id}` }, j.id)),
        h("td", {}, h("span", { class: `state ${stateClass(j)}` }, stateText(j))),
        h("td", { class: "cmd mono", title: commandText(j) }, commandText(j)),
        h("td", {}, fmtTime(j.queued_at)), h("td", {}, fmtDuration(j.duration)),
        h("td", {}, fmtBytes(j.output_bytes)), h("td", {}, isClaude(j) ? fmtUsd(j.claude.cost_usd) : ""))));
      this.note.textContent = `${jobs.length} job(s)${jobs.length === 200 ? " (the newest 200)" : ""}`;
    } catch (e) {
      this.note.textContent = `history: ${e.message}`;
    }
  }
}

export class RecordView {
  constructor(app, id) {
    this.app = app;
    this.id = id;
  }

  async render(root) {
    root.replaceChildren(h("h1", {}, `Job ${this.id}`), h("p", { class: "empty" }, "loading…"));
    let job;
    try {
      job = await this.app.rpc.call("job.get", { job_id: this.id });
    } catch (e) {
      root.replaceChildren(h("h1", {}, `Job ${this.id}`), h("p", { class: "err" }, e.message));
      return;
    }
    const rows = [
      ["State", stateText(job)], ["Command", commandText(job)], ["Directory", job.cwd], ["Session", job.session],
      ["Group", job.group], ["Tags", (job.tags || []).join(", ")], ["Node", job.node], ["Peer", job.peer],
      ["Queued", fmtTime(job.queued_at)], ["Started", fmtTime(job.started_at)], ["Finished", fmtTime(job.finished_at)],
      ["Duration", fmtDuration(job.duration)], ["Timeout", job.timeout ? `${fmtDuration(job.timeout)} (${job.timeout_basis ?? ""})` : null],
      ["Exit code", job.exit_code], ["Signal", job.signal], ["Error", job.error],
      ["Output", `${fmtBytes(job.output_bytes)} (stdout ${fmtBytes(job.stdout_bytes)}, stderr ${fmtBytes(job.stderr_bytes)})${job.output_cut ? ", cut" : ""}`],
      ["CPU", job.usage ? `${job.usage.cpu_seconds.toFixed(2)} s` : null],
      ["Memory peak", job.usage ? fmtBytes(job.usage.memory_peak) : null],
      ["Attempt", job.attempt > 1 ? job.attempt : null], ["Retry of", job.retry_of], ["Retried by", job.retried_by],
      ["Retry note", job.retry_note],
    ];
    if (job.claude) {
      const c = job.claude;
      rows.push(["Claude model", c.model], ["Claude session", c.session_id], ["Claude cost", fmtUsd(c.cost_usd)],
        ["Claude tokens", c.input_tokens !== undefined ? `${c.input_tokens} in / ${c.output_tokens} out` : null],
        ["Claude outcome", c.ok ? "success" : c.error_class ? `${c.error_class}: ${c.error ?? ""}` : null],
        ["API retries", c.api_retries || null]);
    }
    const dl = h("dl", { class: "record" });
    for (const [k, v] of rows) {
      if (v === null || v === undefined || v === "") continue;
      dl.append(h("dt", {}, k), h("dd", { class: k === "Command" ? "mono" : null }, String(v)));
    }
    const live = job.state !== "finished";
    const buttons = h("div", { class: "tools" },
      h("button", { type: "button", onclick: () => this.app.openOutput(job), "aria-label": `Show output of job ${job.id}` }, "output"),
      live ? h("button", { type: "button", class: "danger", "aria-label": `Cancel job ${job.id}`, onclick: async () => {
        await this.app.rpc.call("job.cancel", { job_id: job.id }).catch((e) => this.app.toast(e.message));
        this.render(root);
      } }, "cancel") : null,
      !live && !isClaude(job) ? h("button", { type: "button", "aria-label": `Retry job ${job.id}`, onclick: async () => {
        const started = await this.app.rpc.call("job.start", retryParams(job)).catch((e) => this.app.toast(e.message));
        if (started) location.hash = `#/job/${started.id}`;
      } }, "retry") : null);
    const resume = job.claude ? resumeLine(job.claude.session_id) : null;
    root.replaceChildren(...[h("h1", {}, `Job ${job.id}`), buttons, resume, dl].filter(Boolean));
  }

  leave() {}
}
