// The daemon's JSON-RPC over the page's WebSocket: calls, notifications, binary output frames.
// The browser sends the HttpOnly session cookie with the upgrade; the page never sees a token.

const MAGIC = 0x01;

/** Decode one binary output frame (docs/protocol.md, "Binary output frames"). */
export function unpackFrame(buf) {
  const view = new DataView(buf);
  if (view.byteLength < 20 || view.getUint8(0) !== MAGIC) return null;
  const n = view.getUint16(18, true);
  const jobId = new TextDecoder("ascii").decode(new Uint8Array(buf, 20, n));
  return {
    jobId,
    stream: view.getUint8(1) === 1 ? "stderr" : "stdout",
    seq: Number(view.getBigUint64(2, true)),
    offset: Number(view.getBigUint64(10, true)),
    data: new Uint8Array(buf, 20 + n),
  };
}

export class RpcError extends Error {
  constructor(err) {
    super(err.message);
    this.code = err.code;
    this.data = err.data;
  }
}

export class Rpc extends EventTarget {
  constructor(url) {
    super();
    this.url = url;
    this.ws = null;
    this.nextId = 1;
    this.pending = new Map();
    this.failures = 0;
    this.opened = false;
  }

  connect() {
    const ws = new WebSocket(this.url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.opened = true;
      this.failures = 0;
      this.dispatchEvent(new CustomEvent("state", { detail: "open" }));
    };
    ws.onmessage = (ev) => this.receive(ev.data);
    ws.onclose = async () => {
      for (const { reject } of this.pending.values()) reject(new Error("connection lost"));
      this.pending.clear();
      this.opened = false;
      this.failures = opened ? 0 : this.failures + 1;
      // A browser does not say why an upgrade failed: if /health answers, the daemon
      // is there and refused us (no session); else it is unreachable.
      let detail = "closed";
      if (this.failures >= 2) {
        detail = await fetch("/health", { cache: "no-store" }).then((r) => (r.ok ? "refused" : "unreachable"), () => "unreachable");
      }
      this.dispatchEvent(new CustomEvent("state", { detail }));
      const wait = Math.min(15000, 500 * 2 ** Math.min(this.failures, 5));
      setTimeout(() => this.connect(), wait);
    };
  }

  receive(data) {
    if (typeof data !== "string") {
      const frame = unpackFrame(data);
      if (frame) this.dispatchEvent(new CustomEvent("output", { detail: frame }));
      return;
    }
    let msg;
    try { msg = JSON.parse(data); } catch { return; }
    for (const m of Array.isArray(msg) ? msg : [msg]) {
      if (m.id !== undefined && m.id !== null && this.pending.has(m.id)) {
        const { resolve, reject } = this.pending.get(m.id);
        this.pending.delete(m.id);
        if (m.error) reject(new RpcError(m.error)); else resolve(m.result);
      } else if (m.method) {
        this.dispatchEvent(new CustomEvent(m.method, { detail: m.params }));
      }
    }
  }

  call(method, params = {}) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new Error("not connected"));
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
    });
  }
}
