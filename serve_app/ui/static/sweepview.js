// A sweep's points ranked by its `rank_by` metric (docs/llms-full.md, "sweep"): the job's
// aggregate ranking once it has ended, the results read so far while it runs.

import { h, fmtNumber } from "./dom.js";
import { chart } from "./svgplot.js";

const SHOWN = 30;
const MAX_SERIES = 6;

/** Rows {rank, params, value, index}, best first. */
export function sweepRows(job, results, tasks) {
  const wf = job.workflow || {};
  const rank = wf.rank_by || {};
  const agg = results && results.aggregate_result;
  if (agg && Array.isArray(agg.ranking)) return agg.ranking;
  if (!results) return [];
  const names = wf.parameters || [];
  const payloads = new Map(tasks.map((t) => [t.index, t.payload || {}]));
  const rows = [];
  for (const r of results.results) {
    const value = r.result && r.result[rank.field];
    if (r.status !== "completed" || typeof value !== "number" || !isFinite(value)) continue;
    const payload = payloads.get(r.index) || {};
    rows.push({ params: Object.fromEntries(names.map((n) => [n, payload[n]])), value, index: r.index });
  }
  rows.sort((a, b) => (rank.order === "max" ? b.value - a.value : a.value - b.value) || a.index - b.index);
  return rows.map((r, i) => ({ rank: i + 1, ...r }));
}

function plotFor(rows, names, field) {
  const numeric = (n) => rows.every((r) => typeof r.params[n] === "number");
  const xName = names.find(numeric);
  const other = names.find((n) => n !== xName);
  const groups = new Map();
  for (const r of rows) {
    const key = other !== undefined ? String(r.params[other]) : "";
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(r);
  }
  const split = other !== undefined && groups.size <= MAX_SERIES;
  const buckets = split ? [...groups.entries()] : [["", rows]];
  const xOf = (r) => (xName !== undefined ? r.params[xName] : r.index);
  const xs = rows.map(xOf);
  const xLog = xName !== undefined && xs.every((x) => x > 0) && Math.max(...xs) / Math.min(...xs) >= 100;
  const series = buckets.map(([key, list], i) => ({
    kind: "points",
    cls: `s${i}` + (list.includes(rows[0]) ? " has-best" : ""),
    points: list.map((r) => [xOf(r), r.value]),
    labels: list.map((r) => `#${r.index} ${JSON.stringify(r.params)} → ${field} ${fmtNumber(r.value)}`),
  }));
  if (rows.length) series.push({ kind: "points", cls: "best", points: [[xOf(rows[0]), rows[0].value]], labels: ["best"] });
  const svg = chart({
    name: "sweep", title: `${field} by ${xName ?? "grid point"}`, xLabel: xName ?? "grid point (task index)",
    yLabel: field, series, xLog, width: 520, height: 260,
  });
  const legend = split
    ? h("p", { class: "legend" }, buckets.map(([key], i) => h("span", { class: `key s${i}` }, `${other} = ${key}`)))
    : null;
  return h("div", {}, svg, legend);
}

export function sweepCard(job, results, tasks) {
  const wf = job.workflow || {};
  const rank = wf.rank_by || {};
  const names = wf.parameters || [];
  const rows = sweepRows(job, results, tasks);
  const final = Boolean(results && results.aggregate_result && results.aggregate_result.ranking);
  const table = h("table", { class: "grid", id: "sweep-table" },
    h("thead", {}, h("tr", {}, h("th", {}, "Rank"), names.map((n) => h("th", {}, n)), h("th", {}, `${rank.field} (${rank.order})`), h("th", {}, "Task"))),
    h("tbody", {}, rows.slice(0, SHOWN).map((r, i) =>
      h("tr", { class: i === 0 ? "best" : "" }, h("td", {}, String(r.rank)),
        names.map((n) => h("td", {}, fmtNumber((r.params || {})[n]))),
        h("td", { class: "num" }, fmtNumber(r.value)), h("td", {}, `#${r.index}`)))));
  return h("div", { class: "card", id: "sweep" },
    h("h2", {}, `Sweep ranked by ${rank.field} (${rank.order === "max" ? "highest" : "lowest"} first)`),
    h("p", { class: "muted small" }, final ? `final ranking: ${rows.length} points` : `${rows.length} points so far`),
    h("div", { class: "split" }, h("div", { class: "plot-box" }, plotFor(rows, names, rank.field)), h("div", { class: "scroll" }, table)));
}
