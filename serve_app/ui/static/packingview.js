// A packing recipe job (docs/recipes.md, "packing"): the best valid radius over time (live
// from progress events, then the result's history) and a drawing of the best packing.

import { h, fmtNumber } from "./dom.js";
import { chart } from "./svgplot.js";
import { drawPacking } from "./packing.js";

function recipeResult(results) {
  if (!results) return null;
  if (results.aggregate_result) return results.aggregate_result;
  const first = (results.results || []).find((r) => r.status === "completed");
  return first ? first.result : null;
}

export function packingCard(liveBest, results, tasks) {
  const result = recipeResult(results);
  const history = result && Array.isArray(result.history) ? result.history : null;
  const points = history
    ? history.filter((e) => typeof e.best_score === "number").map((e) => [e.elapsed_s, e.best_score])
    : liveBest;
  const plot = chart({
    name: "best-score", title: "Best valid radius over time (lower is better)",
    xLabel: "seconds since start", yLabel: "radius", series: [{ points, kind: "line", cls: "best-score" }, { points, kind: "points", cls: "best-score" }],
    xDomain: points.length ? [0, Math.max(...points.map((p) => p[0])) * 1.05 || 1] : undefined,
    width: 460, height: 260,
  });
  let candidate = result && result.best_candidate;
  let radius = result && (result.best_score ?? result.score);
  if (!candidate && tasks.length && tasks[0].payload && Array.isArray(tasks[0].payload.candidate)) {
    candidate = tasks[0].payload.candidate; // an eval job draws the candidate it scored
    radius = radius ?? (result && result.mec && result.mec.r);
  }
  const facts = result
    ? h("p", { class: "meta", id: "packing-facts" },
      `radius ${fmtNumber(radius)} · valid ${result.valid}`
        + (result.evaluations !== undefined ? ` · ${result.evaluations} evaluations` : "")
        + (result.stopped ? ` · stopped: ${result.stopped}` : ""))
    : h("p", { class: "muted" }, "The drawing shows when the search answers.");
  const drawing = Array.isArray(candidate) && candidate.length === 45
    ? drawPacking(candidate, radius)
    : h("p", { class: "muted" }, "no packing yet");
  return h("div", { class: "card", id: "packing" },
    h("h2", {}, "Packing"), facts,
    h("div", { class: "split" }, h("div", { class: "plot-box" }, plot), h("div", { class: "drawing" }, drawing)));
}
