// One job's output in a terminal pane: live binary frames, ANSI colours, stderr marked,
// follow/scroll-lock, search, download, any start offset; Claude jobs also as a conversation.

import { Terminal } from "./vendor/xterm-6.0.0/xterm.mjs";
import { FitAddon } from "./vendor/xterm-addon-fit-0.11.0/addon-fit.mjs";
import { SearchAddon } from "./vendor/xterm-addon-search-0.16.0/addon-search.mjs";
import { Conversation } from "./claude.js";
import { chunkBytes, commandText, fmtBytes, h, stateText } from "./util.js";

const TAIL = 1024 * 1024; // a huge output starts this far before its end
const KEEP = 8 * 1024 * 1024; // bytes kept for the "received" check and small downloads
const MAX_DOWNLOAD = 256 * 1024 * 1024;

export class OutputPane {
  constructor(rpc, job, onClose) {
    this.rpc = rpc;
    this.job = job;
    this.id = job.id;
    this.onClose = onClose;
    this.streams = "both";
    this.follow = true;
    this.received = [];
    this.receivedBytes = 0;
    this.counts = { stdout: 0, stderr: 0 };
    this.el = this.render();
    this.onOutput = (ev) => { if (ev.detail.jobId === this.id) this.write(ev.detail); };
    // A job only in history is replayed from the store as job.output notifications, not frames.
    this.onJsonOutput = (ev) => {
      const c = ev.detail;
      if (c.job_id === this.id) this.write({ jobId: c.job_id, stream: c.stream, offset: c.offset, data: chunkBytes(c) });
    };
    this.onFinished = (ev) => { if (ev.detail.job.id === this.id) this.setJob(ev.detail.job); };
    this.onGap = (ev) => {
      if (ev.detail.job_id === this.id) {
        this.term.write(`\r\n\x1b[33m[ccxd: output ${ev.detail.start}–${ev.detail.end} not available: ${ev.detail.reason}]\x1b[0m\r\n`);
      }
    };
    rpc.addEventListener("output", this.onOutput);
    rpc.addEventListener("job.output", this.onJsonOutput);
    rpc.addEventListener("job.finished", this.onFinished);
    rpc.addEventListener("job.gap", this.onGap);
    this.onReopen = (ev) => { if (ev.detail === "open") this.subscribe(this.nextOffset); };
    rpc.addEventListener("state", this.onReopen);
  }

  render() {
    const label = `Output of job ${this.id}`;
    this.term = new Terminal({
      convertEol: true, disableStdin: true, scrollback: 100000, fontSize: 13,
      theme: { background: "#000000" }, allowProposedApi: true, // decorations mark stderr
    });
    this.fit = new FitAddon();
    this.search = new SearchAddon();
    // Tab and Escape leave the terminal (it takes no input): no keyboard trap.
    this.term.attachCustomKeyEventHandler((e) => e.key !== "Tab" && e.key !== "Escape");
    this.term.loadAddon(this.fit);
    this.term.loadAddon(this.search);
    this.termEl = h("div", { class: "term", role: "log", "aria-label": label });
    this.title = h("span", { class: "title mono" });
    this.stateEl = h("span", { class: "state" });
    this.metaEl = h("div", { class: "meta", "aria-live": "off" });
    this.offsetInput = h("input", { type: "number", min: "0", "aria-label": "Start at byte offset" });
    this.searchInput = h("input", { type: "search", placeholder: "search", "aria-label": "Search output" });
    this.searchInput.addEventListener("keydown", (e) => {
      if (e.key === "Enter") (e.shiftKey ? this.search.findPrevious : this.search.findNext).call(this.search, this.searchInput.value);
    });
    const followBox = h("input", { type: "checkbox", checked: true, "aria-label": "Follow new output" });
    followBox.addEventListener("change", () => { this.follow = followBox.checked; if (this.follow) this.term.scrollToBottom(); });
    const streamSel = h("select", { "aria-label": "Streams shown" },
      h("option", { value: "both" }, "stdout + stderr"), h("option", { value: "stdout" }, "stdout only"),
      h("option", { value: "stderr" }, "stderr only"));
    streamSel.addEventListener("change", () => { this.streams = streamSel.value; this.restart(this.startOffset); });
    const tools = h("div", { class: "tools" },
      h("label", { class: "inline" }, followBox, "follow"),
      streamSel,
      h("button", { type: "button", onclick: () => this.restart(0), "aria-label": "Show from the start" }, "⇤ start"),
      h("button", { type: "button", onclick: () => this.restart(Math.max(0, (this.job.output_bytes || 0) - TAIL)), "aria-label": "Show the last MiB" }, "last MiB"),
      this.offsetInput,
      h("button", { type: "button", onclick: () => this.restart(Number(this.offsetInput.value) || 0) }, "go"),
      this.searchInput,
      h("button", { type: "button", onclick: () => this.search.findPrevious(this.searchInput.value), "aria-label": "Previous match" }, "↑"),
      h("button", { type: "button", onclick: () => this.search.findNext(this.searchInput.value), "aria-label": "Next match" }, "↓"),
      h("button", { type: "button", onclick: () => this.download(), "aria-label": `Download output of job ${this.id}` }, "download"),
    );
    const close = h("button", { type: "button", onclick: () => this.close(), "aria-label": `Close output of job ${this.id}` }, "✕");
    const header = h("header", {}, this.stateEl, this.title, close);
    const pane = h("article", { class: "pane", "data-job": this.id, "aria-label": label }, header, tools);
    if (this.job.claude) {
      this.convo = new Conversation(this.rpc, this.job);
      const tOut = h("button", { type: "button", role: "tab", "aria-selected": "false" }, "Output");
      const tConv = h("button", { type: "button", role: "tab", "aria-selected": "true" }, "Conversation");
      const show = (conv) => {
        tConv.setAttribute("aria-selected", String(conv)); tOut.setAttribute("aria-selected", String(!conv));
        this.convo.el.classList.toggle("hidden", !conv); this.termEl.classList.toggle("hidden", conv);
        if (!conv) this.fit.fit();
      };
      tOut.addEventListener("click", () => show(false));
      tConv.addEventListener("click", () => show(true));
      pane.append(h("div", { class: "tabs", role: "tablist" }, tConv, tOut), this.convo.el, this.termEl);
      this.termEl.classList.add("hidden");
    } else {
      pane.append(this.termEl);
    }
    pane.append(this.metaEl);
    this.setJob(this.job);
    return pane;
  }

  mount(container) {
    container.append(this.el);
    this.term.open(this.termEl);
    this.fit.fit();
    this.resize = new ResizeObserver(() => { try { this.fit.fit(); } catch { /* hidden */ } });
    this.resize.observe(this.termEl);
    const start = (this.job.output_bytes || 0) > TAIL ? this.job.output_bytes - TAIL : 0;
    this.restart(start);
  }

  setJob(job) {
    this.job = { ...this.job, ...job };
    this.title.textContent = `${this.id}  ${commandText(this.job)}`;
    this.title.title = commandText(this.job);
    this.stateEl.textContent = stateText(this.job);
    this.updateMeta();
  }

  updateMeta() {
    this.metaEl.textContent = `from byte ${this.startOffset ?? 0} · received ${fmtBytes(this.receivedBytes)}` +
      ` (stdout ${fmtBytes(this.counts.stdout)}, stderr ${fmtBytes(this.counts.stderr)})` +
      ` · job output ${fmtBytes(Math.max(this.job.output_bytes || 0, this.nextOffset || 0))}`;
    this.el && (this.el.dataset.received = String(this.receivedBytes));
  }

  restart(offset) {
    this.startOffset = offset;
    this.nextOffset = offset;
    this.received = [];
    this.receivedBytes = 0;
    this.counts = { stdout: 0, stderr: 0 };
    this.term.reset();
    if (offset > 0) this.term.write(`\x1b[2m[ccxd: showing from byte ${offset}]\x1b[0m\r\n`);
    this.offsetInput.value = String(offset);
    this.subscribe(offset);
  }

  subscribe(offset) {
    if (this.closed) return;
    this.rpc.call("job.subscribe", { job_id: this.id, from_offset: offset, binary: true })
      .then((r) => this.setJob(r.job))
      .catch((e) => this.term.write(`\r\n\x1b[31m[ccxd: ${e.message}]\x1b[0m\r\n`));
  }

  write(frame) {
    if (frame.offset + frame.data.length <= this.nextOffset) return; // replayed after a reconnect
    let data = frame.data;
    if (frame.offset < this.nextOffset) data = data.subarray(this.nextOffset - frame.offset);
    this.nextOffset = frame.offset + frame.data.length;
    this.counts[frame.stream] += data.length;
    if (this.streams !== "both" && this.streams !== frame.stream) { this.updateMeta(); return; }
    if (this.receivedBytes + data.length <= KEEP) this.received.push(data.slice());
    this.receivedBytes += data.length;
    const copy = data.slice();
    this.term.write(copy, () => {
      if (frame.stream === "stderr" && this.streams === "both") this.markStderr(copy);
      if (this.follow) this.term.scrollToBottom();
    });
    this.updateMeta();
  }

  markStderr(data) {
    // A red bar at the left of each line stderr wrote (the cursor is after them): streams told apart.
    let lines = 0;
    for (const b of data) if (b === 10) lines++;
    const last = data.length && data[data.length - 1] !== 10 ? 0 : -1;
    const first = Math.max(last - lines + (last === 0 ? 0 : 1), -200);
    for (let at = first; at <= last; at++) {
      const marker = this.term.registerMarker(at);
      if (!marker) continue;
      const deco = this.term.registerDecoration({ marker, width: 1, overviewRulerOptions: { color: "#ff6b6b" } });
      deco?.onRender((el) => el.classList.add("stderr-mark"));
    }
  }

  /** The bytes shown so far (at most 8 MiB), for checks and small downloads. */
  bytes() {
    const out = new Uint8Array(this.received.reduce((n, b) => n + b.length, 0));
    let at = 0;
    for (const b of this.received) { out.set(b, at); at += b.length; }
    return out;
  }

  async download() {
    // Read the shown range with job.read (16 MiB a call) into a file the browser saves.
    const parts = [];
    let offset = this.startOffset || 0, total = 0;
    for (;;) {
      const r = await this.rpc.call("job.read", { job_id: this.id, offset, max_bytes: 16 * 1024 * 1024 });
      for (const c of r.chunks) {
        if (this.streams !== "both" && c.stream !== this.streams) continue;
        const bytes = chunkBytes(c);
        parts.push(bytes); total += bytes.length;
      }
      if (r.eof || r.next_offset <= offset || total >= MAX_DOWNLOAD) break;
      offset = r.next_offset;
    }
    const url = URL.createObjectURL(new Blob(parts, { type: "application/octet-stream" }));
    const a = h("a", { href: url, download: `ccxd-${this.id}.out` });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  close() {
    this.closed = true;
    this.rpc.removeEventListener("output", this.onOutput);
    this.rpc.removeEventListener("job.output", this.onJsonOutput);
    this.rpc.removeEventListener("job.finished", this.onFinished);
    this.rpc.removeEventListener("job.gap", this.onGap);
    this.rpc.removeEventListener("state", this.onReopen);
    this.rpc.call("job.unsubscribe", { job_id: this.id }).catch(() => {});
    this.convo?.close();
    this.resize?.disconnect();
    this.term.dispose();
    this.el.remove();
    this.onClose(this);
  }
}
