// A Claude job's stream-json events (claude.event) as a readable conversation, with its
// session's `claude --resume` line, cost and tokens, and ccxd's own retries (job.retry).

import { fmtUsd, h } from "./util.js";

function pre(text) {
  return h("pre", {}, text);
}

function blockText(content) {
  if (typeof content === "string") return content;
  return (content || []).map((b) => b.text ?? (b.input !== undefined ? JSON.stringify(b.input, null, 2) : "")).join("\n");
}

/** The `claude --resume` line with a copy button, or nothing without a session. */
export function resumeLine(sessionId) {
  if (!sessionId) return null;
  const line = `claude --resume ${sessionId}`;
  const btn = h("button", { type: "button", "aria-label": "Copy the claude --resume line" }, "copy");
  btn.addEventListener("click", async () => {
    try { await navigator.clipboard.writeText(line); btn.textContent = "copied"; } catch { btn.textContent = "select it"; }
  });
  return h("div", { class: "resume" }, h("code", { class: "resume-line" }, line), btn);
}

export class Conversation {
  constructor(rpc, job) {
    this.rpc = rpc;
    this.id = job.id;
    this.list = h("div", { class: "convo", role: "log", "aria-label": `Conversation of Claude job ${job.id}` });
    this.head = h("div", { class: "tools" });
    this.el = h("div", {}, this.head, this.list);
    this.seen = -1;
    this.summary(job);
    this.onEvent = (ev) => { if (ev.detail.job_id === this.id) this.add(ev.detail); };
    this.onRetry = (ev) => {
      const r = ev.detail;
      if (r.job_id !== this.id) return;
      this.item("retry", `ccxd retry ${r.attempt}: ${r.error_class}`,
        `${r.reason}\nnext job ${r.next_job_id} in ${r.delay.toFixed(1)} s`);
    };
    this.onFinished = (ev) => { if (ev.detail.job.id === this.id) this.summary(ev.detail.job); };
    rpc.addEventListener("claude.event", this.onEvent);
    rpc.addEventListener("job.retry", this.onRetry);
    rpc.addEventListener("job.finished", this.onFinished);
  }

  summary(job) {
    const c = job.claude || {};
    const tokens = (c.input_tokens ?? 0) + (c.output_tokens ?? 0);
    const parts = [
      h("span", {}, `model ${c.model || "?"}`),
      h("span", {}, `cost ${fmtUsd(c.cost_usd)}`),
      h("span", {}, `tokens ${tokens ? `${c.input_tokens ?? 0} in / ${c.output_tokens ?? 0} out` : "–"}`),
      c.error_class ? h("span", { class: "err" }, `error: ${c.error_class}`) : null,
      resumeLine(c.session_id),
    ];
    this.head.replaceChildren(...parts.filter(Boolean));
  }

  item(kind, who, text) {
    const atEnd = this.list.scrollTop + this.list.clientHeight >= this.list.scrollHeight - 4;
    this.list.append(h("div", { class: `ev ${kind}` }, h("div", { class: "who" }, who), text ? pre(text) : null));
    if (atEnd) this.list.scrollTop = this.list.scrollHeight;
  }

  add(params) {
    if (params.seq <= this.seen) return; // replayed after a re-subscription
    this.seen = params.seq;
    const e = params.event;
    switch (e.kind) {
      case "init":
        this.item("", "session", `model ${e.model ?? "?"} · cwd ${e.cwd ?? "?"}\nsession ${e.session_id ?? "?"}`);
        if (e.session_id && !this.head.querySelector(".resume")) this.head.append(resumeLine(e.session_id));
        break;
      case "assistant":
        for (const b of Array.isArray(e.message?.content) ? e.message.content : [{ type: "text", text: e.message?.content }]) {
          if (b.type === "text" && b.text) this.item("assistant", "assistant", b.text);
          else if (b.type === "tool_use") this.item("tool", `tool call · ${b.name}`, JSON.stringify(b.input, null, 2));
          else if (b.type === "thinking") this.item("", "thinking", b.text || "");
        }
        if (e.error) this.item("error", "API error", `${e.error} ${e.api_error_status ?? ""}`);
        break;
      case "user":
        for (const b of Array.isArray(e.message?.content) ? e.message.content : []) {
          if (b.type === "tool_result") this.item(b.is_error ? "error" : "", b.is_error ? "tool error" : "tool result", blockText(b.text ?? b.content ?? "").slice(0, 20000));
        }
        break;
      case "api_retry":
        this.item("retry", `API retry ${e.attempt}${e.max_retries ? ` of ${e.max_retries}` : ""}`,
          `${e.error ?? ""} ${e.error_status ?? ""} · waiting ${((e.retry_delay_ms ?? 0) / 1000).toFixed(1)} s`);
        break;
      case "rate_limit":
        this.item("retry", "rate limit", JSON.stringify(e.rate_limit_info));
        break;
      case "result":
        this.item(e.is_error ? "error" : "result", `result · ${e.subtype ?? ""}`,
          `${e.result ?? ""}\n\ncost ${fmtUsd(e.total_cost_usd)} · ${e.num_turns ?? "?"} turns · ` +
          `${e.usage ? `${e.usage.input_tokens} in / ${e.usage.output_tokens} out tokens` : ""}`);
        break;
      case "text":
        this.item("", "text", e.text);
        break;
      default:
        break; // stream_event deltas and system events: the output tab has them whole
    }
  }

  close() {
    this.rpc.removeEventListener("claude.event", this.onEvent);
    this.rpc.removeEventListener("job.retry", this.onRetry);
    this.rpc.removeEventListener("job.finished", this.onFinished);
  }
}
