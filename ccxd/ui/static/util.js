// Small helpers shared by the views: DOM building, formatting.

/** Create an element: h("td", {class: "x", onclick: f}, child, "text"). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** The bytes of a JSON output chunk (job.output, job.read): UTF-8 text or base64. */
export function chunkBytes(c) {
  return c.encoding === "base64" ? Uint8Array.from(atob(c.data), (ch) => ch.charCodeAt(0)) : new TextEncoder().encode(c.data);
}

export function fmtDuration(s) {
  if (s === null || s === undefined) return "–";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.floor(s % 60)).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

export function fmtTime(t) {
  return t ? new Date(t * 1000).toLocaleString() : "–";
}

export function fmtUsd(x) {
  return x === null || x === undefined ? "–" : `$${x.toFixed(x < 1 ? 4 : 2)}`;
}

export function commandText(job) {
  return Array.isArray(job.command) ? job.command.join(" ") : String(job.command ?? "");
}

/** "running", "queued", … or the reason of a finished job ("exited 0", "cancelled"). */
export function stateText(job) {
  if (job.state !== "finished") return job.state;
  if (job.reason === "exited") return `exited ${job.exit_code ?? ""}`.trim();
  return job.reason || "finished";
}

export function stateClass(job) {
  if (job.state !== "finished") return job.state;
  return job.reason === "exited" && job.exit_code === 0 ? "" : "bad";
}

export function isClaude(job) {
  return !!job.claude;
}

export function elapsed(job, now = Date.now() / 1000) {
  if (job.duration !== undefined && job.duration !== null) return job.duration;
  if (job.started_at) return now - job.started_at;
  return now - job.queued_at;
}

/** Draw a sparkline of ``values`` (0..max) on a small canvas. */
export function spark(canvas, values, color, max) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 90, hh = canvas.clientHeight || 22;
  canvas.width = w * dpr; canvas.height = hh * dpr;
  const ctx = canvas.getContext("2d");
  ctx.scale(dpr, dpr);
  ctx.clearRect(0, 0, w, hh);
  if (values.length < 1) return;
  const top = Math.max(max ?? 0, ...values, 1e-9);
  ctx.strokeStyle = color; ctx.lineWidth = 1.5; ctx.beginPath();
  values.forEach((v, i) => {
    const x = values.length === 1 ? w : (i / (values.length - 1)) * (w - 2) + 1;
    const y = hh - 2 - (v / top) * (hh - 4);
    if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
  });
  ctx.stroke();
}
