// DOM helpers: elements from data, text only (never innerHTML), so a job's output or result
// can never run as markup.

/** h("div", {class: "x", dataset: {k: v}}, child, "text", …) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return isNaN(d) ? String(iso) : d.toLocaleString();
}

export function fmtSeconds(s) {
  if (s === null || s === undefined || !isFinite(s)) return "—";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 90) return `${s.toFixed(1)} s`;
  if (s < 5400) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

export function fmtNumber(v) {
  if (typeof v !== "number") return v === null || v === undefined ? "—" : String(v);
  if (Number.isInteger(v)) return String(v);
  return String(Number(v.toPrecision(6)));
}

/** JSON text cut to `max` characters (an ellipsis says it was cut). */
export function shortJson(value, max) {
  const text = JSON.stringify(value);
  if (text === undefined) return "—";
  return text.length > max ? text.slice(0, max - 1) + "…" : text;
}

export const TERMINAL = new Set(["completed", "partial", "failed", "cancelled"]);

export function kindOf(job) {
  return job.recipe ? `recipe ${job.recipe}` : job.type || "job";
}

/** A segmented progress bar of task counts (completed, failed, cancelled, running). */
export function countsBar(counts, label) {
  const total = Math.max(counts.total || 0, 0);
  const ended = (counts.completed || 0) + (counts.failed || 0) + (counts.cancelled || 0);
  const pct = total ? Math.floor((100 * ended) / total) : 0;
  const bar = h("div", {
    class: "bar",
    role: "progressbar",
    "aria-valuemin": 0,
    "aria-valuemax": 100,
    "aria-valuenow": pct,
    "aria-label": label || "tasks ended",
  });
  for (const part of ["completed", "failed", "cancelled", "running"]) {
    const n = counts[part] || 0;
    if (!n || !total) continue;
    const seg = h("span", { class: "seg " + part, title: `${n} ${part}` });
    seg.style.width = `${(100 * n) / total}%`;
    bar.appendChild(seg);
  }
  return { bar, pct, ended, total };
}
