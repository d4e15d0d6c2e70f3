// Drawing of a packing recipe candidate (docs/recipes.md, "packing"): fifteen unit
// semicircles [x, y, θ]… — (x, y) the centre of the full disk, θ the direction the curved side
// bulges — and their enclosing circle.

import { svgEl } from "./svgplot.js";

/** Boundary points of one unit semicircle: its flat edge's ends and `n` points on its arc. */
export function semicirclePoints(x, y, theta, n) {
  const pts = [];
  for (let i = 0; i <= n; i++) {
    const phi = theta - Math.PI / 2 + (Math.PI * i) / n;
    pts.push([x + Math.cos(phi), y + Math.sin(phi)]);
  }
  return pts;
}

function circleFrom2(a, b) {
  const cx = (a[0] + b[0]) / 2;
  const cy = (a[1] + b[1]) / 2;
  return [cx, cy, Math.hypot(a[0] - cx, a[1] - cy)];
}

function circleFrom3(a, b, c) {
  const d = 2 * (a[0] * (b[1] - c[1]) + b[0] * (c[1] - a[1]) + c[0] * (a[1] - b[1]));
  if (Math.abs(d) < 1e-12) return null;
  const a2 = a[0] * a[0] + a[1] * a[1];
  const b2 = b[0] * b[0] + b[1] * b[1];
  const c2 = c[0] * c[0] + c[1] * c[1];
  const cx = (a2 * (b[1] - c[1]) + b2 * (c[1] - a[1]) + c2 * (a[1] - b[1])) / d;
  const cy = (a2 * (c[0] - b[0]) + b2 * (a[0] - c[0]) + c2 * (b[0] - a[0])) / d;
  return [cx, cy, Math.hypot(a[0] - cx, a[1] - cy)];
}

const inside = (c, p) => Math.hypot(p[0] - c[0], p[1] - c[1]) <= c[2] + 1e-9;

/** Smallest circle holding every point (Welzl's algorithm, iterative form) as [x, y, r]. */
export function enclosingCircle(points) {
  const p = points.slice();
  for (let i = p.length - 1; i > 0; i--) {
    const j = (i * 7919 + 13) % (i + 1); // a fixed shuffle: the same drawing every time
    [p[i], p[j]] = [p[j], p[i]];
  }
  let c = [p[0][0], p[0][1], 0];
  for (let i = 1; i < p.length; i++) {
    if (inside(c, p[i])) continue;
    c = [p[i][0], p[i][1], 0];
    for (let j = 0; j < i; j++) {
      if (inside(c, p[j])) continue;
      c = circleFrom2(p[i], p[j]);
      for (let k = 0; k < j; k++) {
        if (inside(c, p[k])) continue;
        c = circleFrom3(p[i], p[j], p[k]) || c;
      }
    }
  }
  return c;
}

/** An SVG drawing of `candidate` (45 numbers); `radius` is the scorer's (shown in the title). */
export function drawPacking(candidate, radius, size) {
  const S = size || 420;
  const shapes = [];
  for (let i = 0; i + 2 < candidate.length; i += 3) shapes.push(candidate.slice(i, i + 3));
  const mec = enclosingCircle(shapes.flatMap(([x, y, t]) => semicirclePoints(x, y, t, 90)));
  const r = radius || mec[2];
  const scale = (S / 2 - 14) / r;
  const svg = svgEl("svg", { class: "packing", viewBox: `0 0 ${S} ${S}`, role: "img", "aria-label": `packing, radius ${r}` });
  const world = svgEl("g", { transform: `translate(${S / 2} ${S / 2}) scale(${scale} ${-scale}) translate(${-mec[0]} ${-mec[1]})` });
  world.appendChild(svgEl("circle", { class: "enclosing", cx: mec[0], cy: mec[1], r, "vector-effect": "non-scaling-stroke" }));
  const labels = svgEl("g", { class: "labels" });
  shapes.forEach(([x, y, t], i) => {
    const ax = x - Math.sin(t);
    const ay = y + Math.cos(t);
    const bx = x + Math.sin(t);
    const by = y - Math.cos(t);
    // Counter-clockwise from a (θ + 90°) to b (θ - 90°) through θ: decreasing angle, sweep 0.
    const d = `M${ax} ${ay}A1 1 0 0 0 ${bx} ${by}Z`;
    const path = svgEl("path", { class: "semicircle", d, "vector-effect": "non-scaling-stroke" });
    path.appendChild(svgEl("title", {}, `#${i}: x ${x}, y ${y}, θ ${t}`));
    world.appendChild(path);
    const lx = S / 2 + (x + 0.45 * Math.cos(t) - mec[0]) * scale;
    const ly = S / 2 - (y + 0.45 * Math.sin(t) - mec[1]) * scale;
    labels.appendChild(svgEl("text", { class: "semi-label", x: lx, y: ly + 4 }, String(i)));
  });
  svg.appendChild(world);
  svg.appendChild(labels);
  return svg;
}
