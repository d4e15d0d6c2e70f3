// Small SVG charts with axes, ticks and labels: lines, steps, points and histograms.
// No library; every chart is rebuilt from its data (they are small).

export const SVG_NS = "http://www.w3.org/2000/svg";

export function svgEl(name, attrs, text) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

/** About `count` round tick values covering [lo, hi]. */
export function niceTicks(lo, hi, count) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / Math.max(count, 1);
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) {
    out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  }
  return out;
}

export function formatTick(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(1);
  return String(Number(v.toPrecision(4)));
}

function extent(values, pad) {
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (!isFinite(lo) || !isFinite(hi)) return [0, 1];
  if (lo === hi) {
    const d = Math.abs(lo) * 0.1 || 1;
    return [lo - d, hi + d];
  }
  const d = (hi - lo) * (pad || 0);
  return [lo - d, hi + d];
}

/**
 * Build a chart. spec: {title, xLabel, yLabel, name, width, height, xLog, yFrom0, xDomain,
 * yDomain, series: [{points: [[x, y]…], kind: "line" | "step" | "points", cls, labels}],
 * bars: {edges: [..n+1], counts: [..n]}}.
 */
export function chart(spec) {
  const W = spec.width || 460;
  const H = spec.height || 240;
  const m = { left: 62, right: 18, top: 30, bottom: 46 };
  const svg = svgEl("svg", {
    class: "plot",
    viewBox: `0 0 ${W} ${H}`,
    role: "img",
    "aria-label": spec.title || "",
    "data-plot": spec.name || "",
  });
  svg.appendChild(svgEl("text", { class: "plot-title", x: m.left, y: 18 }, spec.title || ""));
  const series = (spec.series || []).map((s) => ({
    ...s,
    points: s.points.filter(([x, y]) => isFinite(x) && isFinite(y) && (!spec.xLog || x > 0)),
  }));
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  const bars = spec.bars;
  if (bars) {
    xs.push(bars.edges[0], bars.edges[bars.edges.length - 1]);
    ys.push(0, ...bars.counts);
  }
  if (!xs.length) {
    svg.appendChild(svgEl("text", { class: "plot-empty", x: W / 2, y: H / 2 }, "no data yet"));
    return svg;
  }
  const tx = (v) => (spec.xLog ? Math.log10(v) : v);
  let [x0, x1] = spec.xDomain || extent(xs.map(tx), 0.02);
  if (spec.xDomain && spec.xLog) [x0, x1] = spec.xDomain.map(Math.log10);
  let [y0, y1] = spec.yDomain || extent(ys, 0.06);
  if (spec.yFrom0 && !spec.yDomain) y0 = Math.min(0, y0);
  const px = (v) => m.left + ((tx(v) - x0) / (x1 - x0)) * (W - m.left - m.right);
  const py = (v) => H - m.bottom - ((v - y0) / (y1 - y0)) * (H - m.top - m.bottom);

  const axes = svgEl("g", { class: "axes" });
  const yTicks = niceTicks(y0, y1, 5);
  for (const t of yTicks) {
    axes.appendChild(svgEl("line", { class: "grid", x1: m.left, x2: W - m.right, y1: py(t), y2: py(t) }));
    axes.appendChild(svgEl("text", { class: "tick y", x: m.left - 6, y: py(t) + 4 }, formatTick(t)));
  }
  const xTicks = spec.xLog
    ? niceTicks(Math.floor(x0), Math.ceil(x1), Math.min(6, Math.ceil(x1) - Math.floor(x0))).filter((t) => t >= x0 - 1e-9 && t <= x1 + 1e-9).map((t) => Math.pow(10, t))
    : niceTicks(x0, x1, 6);
  for (const t of xTicks) {
    axes.appendChild(svgEl("line", { class: "tick-mark", x1: px(t), x2: px(t), y1: H - m.bottom, y2: H - m.bottom + 4 }));
    axes.appendChild(svgEl("text", { class: "tick x", x: px(t), y: H - m.bottom + 16 }, formatTick(t)));
  }
  axes.appendChild(svgEl("line", { class: "axis", x1: m.left, x2: W - m.right, y1: H - m.bottom, y2: H - m.bottom }));
  axes.appendChild(svgEl("line", { class: "axis", x1: m.left, x2: m.left, y1: m.top, y2: H - m.bottom }));
  axes.appendChild(svgEl("text", { class: "axis-label x", x: (m.left + W - m.right) / 2, y: H - 8 }, spec.xLabel || ""));
  const yMid = (m.top + H - m.bottom) / 2;
  axes.appendChild(
    svgEl("text", { class: "axis-label y", x: 14, y: yMid, transform: `rotate(-90 14 ${yMid})` }, spec.yLabel || ""),
  );
  svg.appendChild(axes);

  if (bars) {
    const g = svgEl("g", { class: "bars" });
    bars.counts.forEach((c, i) => {
      const a = px(bars.edges[i]);
      const b = px(bars.edges[i + 1]);
      const rect = svgEl("rect", { class: "hbar", x: a + 0.5, y: py(c), width: Math.max(b - a - 1, 1), height: py(0) - py(c) });
      rect.appendChild(svgEl("title", {}, `${formatTick(bars.edges[i])}–${formatTick(bars.edges[i + 1])}: ${c}`));
      g.appendChild(rect);
    });
    svg.appendChild(g);
  }
  for (const s of series) {
    if (!s.points.length) continue;
    if (s.kind === "points") {
      const g = svgEl("g", { class: "points " + (s.cls || "") });
      s.points.forEach(([x, y], i) => {
        const dot = svgEl("circle", { class: "point", cx: px(x), cy: py(y), r: 3.5 });
        const label = s.labels ? s.labels[i] : `${formatTick(x)}, ${formatTick(y)}`;
        dot.appendChild(svgEl("title", {}, label));
        g.appendChild(dot);
      });
      svg.appendChild(g);
      continue;
    }
    let d = "";
    s.points.forEach(([x, y], i) => {
      if (i === 0) d += `M${px(x).toFixed(1)},${py(y).toFixed(1)}`;
      else if (s.kind === "step") d += `H${px(x).toFixed(1)}V${py(y).toFixed(1)}`;
      else d += `L${px(x).toFixed(1)},${py(y).toFixed(1)}`;
    });
    svg.appendChild(svgEl("path", { class: "series " + (s.cls || ""), d, "data-points": s.points.length }));
  }
  return svg;
}

/** Equal-width bins of `values` ({edges, counts}); at most `bins` of them. */
export function histogram(values, bins) {
  if (!values.length) return null;
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (lo === hi) {
    lo -= 0.5;
    hi += 0.5;
  }
  const n = Math.max(1, Math.min(bins, Math.ceil(Math.sqrt(values.length)) + 1));
  const width = (hi - lo) / n;
  const counts = new Array(n).fill(0);
  for (const v of values) counts[Math.min(n - 1, Math.floor((v - lo) / width))] += 1;
  const edges = counts.map((_, i) => lo + i * width).concat([hi]);
  return { edges, counts };
}
