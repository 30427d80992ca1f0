// The daemon's `status` (daemon.status, claude.budget) as a page.

import { fmtDuration, fmtUsd, h } from "./util.js";

export class StatusView {
  constructor(app) {
    this.app = app;
  }

  async render(root) {
    root.replaceChildren(h("h1", {}, "System"), h("p", { class: "empty" }, "loading…"));
    const rpc = this.app.rpc;
    let s, budget, hooks;
    try {
      [s, budget, hooks] = await Promise.all([rpc.call("daemon.status"), rpc.call("claude.budget").catch(() => null),
        rpc.call("hooks.list").catch(() => null)]);
    } catch (e) {
      root.replaceChildren(h("h1", {}, "System"), h("p", { class: "err" }, e.message));
      return;
    }
    const sh = s.store_health || {};
    const rows = [
      ["Version", `ccxd ${s.version} (pid ${s.pid}) on ${s.node}`], ["Uptime", fmtDuration(s.uptime)],
      ["Jobs", Object.entries(s.jobs).map(([k, v]) => `${v} ${k}`).join(", ")],
      ["Store", s.store],
      ["Journal backlog", `${sh.journal_bytes ?? 0} bytes${sh.journal_full ? " (full)" : ""}, ${sh.journal_dropped ?? 0} writes dropped, ${sh.refused ?? 0} refused`],
      ["Last refused write", sh.last_refused],
      ["Resource backend", s.cgroups], ["Job shim", s.shim], ["Default shell", s.shell],
      ["Admission (refused connections)", Object.entries(s.refused || {}).map(([k, v]) => `${k} ${v}`).join(", ")],
      ["Connections", s.connections], ["Descriptor limit", s.fd_limit], ["Event-loop lag", `${s.loop_lag_ms.toFixed(1)} ms`],
      ["Hooks loaded", `${s.hooks}${hooks?.hooks?.length ? `: ${hooks.hooks.map((x) => x.name).join(", ")}` : ""}`],
      ["Listeners", (s.listeners || []).map((l) => `${l.kind} ${l.address}`).join("; ")],
    ];
    if (budget) {
      rows.push(["Claude today", `${fmtUsd(budget.spent_today_usd)}${budget.daily_usd ? ` of ${fmtUsd(budget.daily_usd)}` : ""}`],
        ["Claude this month", `${fmtUsd(budget.spent_month_usd)}${budget.monthly_usd ? ` of ${fmtUsd(budget.monthly_usd)}` : ""}`],
        ["Claude budget", budget.spent || "available"]);
    }
    const dl = h("dl", { class: "record", id: "status" });
    for (const [k, v] of rows) {
      if (v === null || v === undefined || v === "") continue;
      dl.append(h("dt", {}, k), h("dd", {}, String(v)));
    }
    root.replaceChildren(h("h1", {}, "System"), dl);
  }

  leave() {}
}
