// The dashboard's entry: one WebSocket to the daemon (same origin, session cookie), a hash
// router over the views, and the output panes shown side by side under them.

import { adoptInlineStyles } from "./cspstyles.js";
import { HistoryView, RecordView } from "./history.js";
import { JobsView } from "./jobs.js";
import { OutputPane } from "./output.js";
import { Rpc } from "./rpc.js";
import { StatsView } from "./stats.js";
import { StatusView } from "./status.js";
import { h } from "./util.js";

const MAX_PANES = 4;

class App {
  constructor() {
    this.main = document.getElementById("main");
    this.panesEl = document.getElementById("panes");
    this.connEl = document.getElementById("conn");
    this.panes = new Map();
    this.jobs = new JobsView(this);
    this.history = new HistoryView(this);
    this.view = null;
    adoptInlineStyles(this.panesEl);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    this.rpc = new Rpc(`${scheme}//${location.host}/ws`);
    this.rpc.addEventListener("state", (ev) => this.connection(ev.detail));
    this.rpc.connect();
    window.addEventListener("hashchange", () => this.route());
  }

  connection(state) {
    const text = { open: "connected", closed: "reconnecting…", unreachable: "the daemon is not reachable; retrying…",
      refused: "not logged in — run ccxctl ui for a login link" }[state];
    this.connEl.textContent = text;
    this.connEl.className = `conn ${state === "open" ? "ok" : "bad"}`;
    document.body.dataset.conn = state;
    if (state === "open") this.route();
    if (state === "refused") {
      this.view?.leave();
      this.view = null;
      this.main.replaceChildren(h("section", { class: "message" }, h("h1", {}, "Not logged in"),
        h("p", {}, "The session has ended (it lasts 12 hours, and a daemon restart ends it). Run ",
          h("code", {}, "ccxctl ui"), " in a terminal for a new login link.")));
    }
  }

  route() {
    const hash = location.hash || "#/jobs";
    const [, name, arg] = hash.split("/");
    this.view?.leave();
    const views = { jobs: () => this.jobs, history: () => this.history, stats: () => new StatsView(this),
      status: () => new StatusView(this), job: () => new RecordView(this, decodeURIComponent(arg || "")) };
    this.view = (views[name] || views.jobs)();
    for (const a of document.querySelectorAll("nav a")) {
      if (a.dataset.view === (name === "job" ? "history" : name)) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    document.body.dataset.view = name || "jobs";
    if (this.rpc.opened) this.view.render(this.main);
  }

  openOutput(job) {
    const open = this.panes.get(job.id);
    if (open) { open.el.scrollIntoView({ block: "nearest" }); open.termEl.focus(); return; }
    if (this.panes.size >= MAX_PANES) this.panes.values().next().value.close();
    const pane = new OutputPane(this.rpc, job, (p) => this.panes.delete(p.id));
    this.panes.set(job.id, pane);
    pane.mount(this.panesEl);
    pane.el.scrollIntoView({ block: "nearest" });
  }

  toast(text) {
    const t = h("div", { class: "toast", role: "alert" }, text);
    document.body.append(t);
    setTimeout(() => t.remove(), 5000);
  }
}

window.ccxdDashboard = new App();
