// One job, followed live (docs/llms-full.md: "Jobs", "Results", "Streaming").
// The stream drives the counts, the bars and the live output at once; the task list, the
// results and the job object are re-read at most once a second while something changed.

import { follow, getJson, getPages, AuthError } from "./api.js";
import { h, clear, fmtTime, fmtSeconds, fmtNumber, shortJson, TERMINAL, kindOf, countsBar } from "./dom.js";
import { chart, histogram } from "./svgplot.js";
import { sweepCard } from "./sweepview.js";
import { packingCard } from "./packingview.js";

/** Tasks read for the duration plot and the progress curve (one page; a bigger job's curve is
 * drawn from the counts seen live). */
const MAX_TASKS = 500;
/** Least milliseconds between two re-reads; a slow re-read waits four times its own length. */
const REFRESH_MS = 1000;
const OUTPUT_LINES = 40;

export class JobView {
  constructor(root, jobId, onAuthError) {
    this.root = root;
    this.jobId = jobId;
    this.onAuthError = onAuthError;
    this.abort = new AbortController();
    this.job = null;
    this.status = new Map(); // task id -> status, from task events
    this.progress = new Map(); // task id -> {index, fields}
    this.index = new Map(); // task id -> index
    this.samples = []; // [seconds since start, ended share] seen live
    this.endedLive = new Map(); // task id -> seconds since start its ending task event arrived
    this.packingLive = []; // [seconds, best_score] from progress events
    this.outputLines = [];
    this.tasks = [];
    this.tasksTruncated = false;
    this.failed = [];
    this.results = null;
    this.dirty = true;
    this.ended = false;
    this.finalRead = false;
    this.streamState = "connecting";
    this.framePending = false;
  }

  async start() {
    clear(this.root).appendChild(h("p", { class: "muted" }, "Loading job…"));
    try {
      this.job = await getJson(`/api/v1/jobs/${encodeURIComponent(this.jobId)}`);
    } catch (err) {
      return this.fail(err);
    }
    this.ended = TERMINAL.has(this.job.status);
    this.build();
    this.refreshLoop();
    follow(
      `/api/v1/jobs/${encodeURIComponent(this.jobId)}/stream`,
      { onEvent: (evt) => this.onEvent(evt), onState: (s, err) => this.onStreamState(s, err) },
      this.abort.signal,
    );
  }

  stop() {
    this.abort.abort();
  }

  fail(err) {
    if (err instanceof AuthError) return this.onAuthError(err);
    clear(this.root).appendChild(h("p", { class: "error" }, `Could not load job ${this.jobId}: ${err.message}`));
  }

  elapsed() {
    const start = this.job && (this.job.started_at || this.job.created_at);
    if (!start) return 0;
    const end = this.ended && this.job.finished_at ? Date.parse(this.job.finished_at) : Date.now();
    return Math.max(0, (end - Date.parse(start)) / 1000);
  }

  onStreamState(state, err) {
    this.streamState = state;
    if (state === "error" && err instanceof AuthError) return this.onAuthError(err);
    if (state === "ended") this.dirty = true;
    this.schedule();
  }

  onEvent(evt) {
    const d = evt.data || {};
    if (evt.event === "job" || evt.event === "end") {
      if (d.status && d.id) this.job = { ...this.job, ...d };
      if (evt.event === "end" || TERMINAL.has(this.job.status)) this.ended = true;
    } else if (evt.event === "task") {
      this.status.set(d.task_id, d.status);
      this.index.set(d.task_id, d.index);
      if (["completed", "failed", "cancelled"].includes(d.status)) {
        // (a job bigger than one page of tasks draws its curve from the samples below)
        if (!this.tasksTruncated && !this.endedLive.has(d.task_id)) this.endedLive.set(d.task_id, this.elapsed());
      } else {
        this.endedLive.delete(d.task_id); // a retry runs it again
      }
      if (d.status !== "running") this.progress.delete(d.task_id);
    } else if (evt.event === "progress") {
      const fields = d.progress || {};
      this.progress.set(d.task_id, fields);
      if (typeof fields.best_score === "number") this.packingLive.push([this.elapsed(), fields.best_score]);
    } else if (evt.event === "output") {
      const idx = this.index.has(d.task_id) ? `#${this.index.get(d.task_id)}` : d.task_id;
      for (const line of String(d.text || "").split("\n")) {
        if (line) this.outputLines.push({ task: idx, stream: d.stream, line });
      }
      this.outputLines = this.outputLines.slice(-OUTPUT_LINES);
    } else if (evt.event === "error") {
      this.streamError = (d.error && d.error.message) || "stream error";
    }
    const c = this.counts();
    if (c.total) {
      // One sample per 0.2 s at most: a 100,000-task job keeps a short curve.
      const sample = [this.elapsed(), (c.completed + c.failed + c.cancelled) / c.total];
      const prev = this.samples[this.samples.length - 1];
      if (prev && sample[0] - prev[0] < 0.2) this.samples[this.samples.length - 1] = sample;
      else this.samples.push(sample);
    }
    this.dirty = true;
    this.schedule();
  }

  /** Task counts: the stream's task events when it has them, else the job object's. */
  counts() {
    const fromJob = { total: 0, queued: 0, running: 0, completed: 0, failed: 0, cancelled: 0, ...(this.job.task_counts || {}) };
    if (!this.status.size || this.ended) return fromJob;
    const c = { total: fromJob.total, queued: 0, running: 0, completed: 0, failed: 0, cancelled: 0 };
    for (const s of this.status.values()) if (s in c) c[s] += 1;
    c.total = Math.max(c.total, this.status.size);
    c.queued = Math.max(0, c.total - c.running - c.completed - c.failed - c.cancelled);
    return c;
  }

  async refreshLoop() {
    while (!this.abort.signal.aborted) {
      let wait = REFRESH_MS;
      if (this.dirty && !this.finalRead) {
        const last = this.ended;
        this.dirty = false;
        const began = performance.now();
        try {
          await this.refresh();
          wait = Math.max(REFRESH_MS, 4 * (performance.now() - began));
          if (last) this.finalRead = true;
          else if (this.ended) this.dirty = true; // one more read, after the end
        } catch (err) {
          if (err instanceof AuthError) return this.onAuthError(err);
          this.dirty = true;
        }
        this.schedule();
      }
      await new Promise((r) => setTimeout(r, wait));
      if (!this.ended && this.streamState !== "live") this.dirty = true;
    }
  }

  async refresh() {
    const id = encodeURIComponent(this.jobId);
    const [job, tasks, failed] = await Promise.all([
      getJson(`/api/v1/jobs/${id}`),
      getPages(`/api/v1/jobs/${id}/tasks`, "tasks", { limit: 500 }, MAX_TASKS),
      getJson(`/api/v1/jobs/${id}/tasks`, { status: "failed", limit: 20 }),
    ]);
    this.job = job;
    if (TERMINAL.has(job.status)) this.ended = true;
    this.tasks = tasks.items;
    this.tasksTruncated = tasks.truncated;
    if (this.tasksTruncated) this.endedLive.clear();
    for (const t of this.tasks) this.index.set(t.id, t.index);
    this.failed = failed.tasks;
    const wantsAll = job.type === "sweep" || job.recipe === "packing";
    if (this.ended || wantsAll) {
      this.results = await getJson(`/api/v1/results/${id}`, { limit: wantsAll ? 1000 : 50 });
    }
  }

  schedule() {
    if (this.framePending) return;
    this.framePending = true;
    requestAnimationFrame(() => {
      this.framePending = false;
      this.render();
    });
  }

  build() {
    const root = clear(this.root);
    this.el = {
      head: h("div", { class: "job-head" }),
      bars: h("div", { class: "bars" }),
      stats: h("div", { class: "stats" }),
      progressPlot: h("div", { class: "plot-box", id: "plot-progress" }),
      durationPlot: h("div", { class: "plot-box", id: "plot-durations" }),
      special: h("div", { id: "special" }),
      failed: h("div", { id: "failed" }),
      output: h("pre", { class: "tail live-output", id: "live-output" }),
      results: h("div", { id: "results" }),
    };
    const e = this.el;
    root.append(
      h("p", { class: "back" }, h("a", { href: "#/jobs" }, "← all jobs")),
      e.head,
      h("div", { class: "card" }, h("h2", {}, "Progress"), e.bars, e.stats),
      h("div", { class: "charts" }, h("div", { class: "card" }, e.progressPlot), h("div", { class: "card" }, e.durationPlot)),
      e.special,
      h("div", { class: "card" }, h("h2", {}, "Failed tasks"), e.failed),
      h("div", { class: "card" }, h("h2", {}, "Live output"), e.output),
      h("div", { class: "card" }, h("h2", {}, "Results"), e.results),
    );
  }

  render() {
    if (!this.el) return;
    const job = this.job;
    const c = this.counts();
    const e = this.el;
    const stateText = this.ended ? "stream closed" : this.streamState === "live" ? "● live" : this.streamState;
    clear(e.head).append(
      h("div", { class: "row between" },
        h("h1", {}, "Job ", h("code", { id: "job-id" }, job.id)),
        h("span", { class: `badge status-${job.status}`, id: "job-status" }, job.status)),
      h("p", { class: "meta" },
        `${kindOf(job)}${job.project ? " · project " + job.project : ""} · created ${fmtTime(job.created_at)}`
          + ` · started ${fmtTime(job.started_at)} · finished ${fmtTime(job.finished_at)} · `,
        h("span", { class: "stream-state " + (this.streamState === "live" && !this.ended ? "live" : "") }, stateText)),
    );
    if (job.error) e.head.appendChild(h("p", { class: "error" }, `${job.error.code}: ${job.error.message}`));
    this.renderBars(c);
    this.renderPlots(c);
    clear(e.special);
    if (job.type === "sweep") e.special.appendChild(sweepCard(job, this.results, this.tasks));
    if (job.recipe === "packing") e.special.appendChild(packingCard(this.packingLive, this.results, this.tasks));
    this.renderFailed();
    clear(e.output).textContent = this.outputLines.length
      ? this.outputLines.map((l) => `${l.task} ${l.stream === "stderr" ? "!" : " "} ${l.line}`).join("\n")
      : "(no output yet)";
    e.output.scrollTop = e.output.scrollHeight;
    this.renderResults();
  }

  renderBars(c) {
    const { bar, pct, ended, total } = countsBar(c, "tasks ended");
    bar.id = "job-progress";
    const rows = [
      h("div", { class: "bar-row" }, h("span", { class: "bar-label" }, "All tasks"), bar,
        h("span", { class: "bar-value", id: "job-progress-text" }, `${ended} / ${total} (${pct}%)`)),
    ];
    const running = [...this.progress.entries()].filter(([id]) => this.status.get(id) === "running" || !this.status.size);
    for (const [id, fields] of running.slice(0, 12)) {
      if (typeof fields.fraction !== "number") continue;
      const p = Math.round(Math.min(1, Math.max(0, fields.fraction)) * 100);
      const inner = h("div", { class: "bar thin", role: "progressbar", "aria-valuenow": p, "aria-valuemin": 0, "aria-valuemax": 100 });
      const seg = h("span", { class: "seg running" });
      seg.style.width = `${p}%`;
      inner.appendChild(seg);
      const idx = this.index.has(id) ? `task #${this.index.get(id)}` : "task";
      rows.push(h("div", { class: "bar-row" }, h("span", { class: "bar-label" }, idx), inner,
        h("span", { class: "bar-value" }, `${p}%${fields.message ? " · " + fields.message : ""}`)));
    }
    clear(this.el.bars).append(...rows);
    const elapsed = this.elapsed();
    const rate = this.throughput(elapsed, ended);
    const left = total - ended;
    const eta = this.ended ? 0 : rate > 0 ? left / rate : null;
    clear(this.el.stats).append(
      stat("queued", c.queued), stat("running", c.running), stat("completed", c.completed),
      stat("failed", c.failed), stat("cancelled", c.cancelled),
      stat("throughput", rate > 0 ? `${rate.toFixed(rate < 10 ? 2 : 0)} tasks/s` : "—", "throughput"),
      stat("elapsed", fmtSeconds(elapsed)),
      stat("ETA", this.ended ? "done" : eta === null ? "—" : fmtSeconds(eta), "eta"),
    );
  }

  /** Tasks per second over the last 30 s of finishes (all of them when the job has ended). */
  throughput(elapsed, ended) {
    const start = Date.parse(this.job.started_at || this.job.created_at);
    const finishes = this.tasks.filter((t) => t.finished_at).map((t) => (Date.parse(t.finished_at) - start) / 1000);
    if (!this.ended && finishes.length >= 3) {
      const recent = finishes.filter((t) => t >= elapsed - 30);
      const since = Math.max(1, Math.min(30, elapsed - Math.min(...recent, elapsed)));
      if (recent.length >= 2) return recent.length / since;
    }
    return elapsed > 0 ? ended / elapsed : 0;
  }

  /** Seconds since start at which each ended task ended: the task list's `finished_at` where the
   * last re-read has it, else when the stream said so (the curve grows between re-reads). */
  endTimes() {
    const start = Date.parse(this.job.started_at || this.job.created_at);
    const ENDED = ["completed", "failed", "cancelled"];
    const times = new Map();
    for (const t of this.tasks) {
      const live = this.status.get(t.id);
      if (live && !ENDED.includes(live)) continue; // running again since the re-read
      if (t.finished_at && ENDED.includes(t.status)) times.set(t.id, Math.max(0, (Date.parse(t.finished_at) - start) / 1000));
    }
    for (const [id, at] of this.endedLive) if (!times.has(id) && ENDED.includes(this.status.get(id))) times.set(id, at);
    return [...times.values()].sort((a, b) => a - b);
  }

  renderPlots(c) {
    const done = this.tasksTruncated ? [] : this.endTimes();
    let points;
    const total = Math.max(c.total, 1);
    if (!this.tasksTruncated && done.length) {
      points = [[0, 0], ...done.map((t, i) => [t, (100 * (i + 1)) / total])];
    } else {
      points = [[0, 0], ...this.samples.map(([t, f]) => [t, 100 * f])];
    }
    const ended = c.completed + c.failed + c.cancelled;
    if (!this.ended) points.push([this.elapsed(), (100 * ended) / total]);
    clear(this.el.progressPlot).appendChild(
      chart({ name: "progress", title: "Progress over time", xLabel: "seconds since start", yLabel: "tasks ended (%)",
        series: [{ points, kind: "step", cls: "progress" }], yDomain: [0, 100] }),
    );
    const durations = this.tasks.filter((t) => typeof t.duration_s === "number").map((t) => t.duration_s);
    clear(this.el.durationPlot).appendChild(
      chart({ name: "durations", title: `Task durations (${durations.length}${this.tasksTruncated ? ", first " + MAX_TASKS : ""} tasks)`, xLabel: "duration (s)", yLabel: "tasks",
        bars: histogram(durations, 20) || undefined, yFrom0: true }),
    );
  }

  renderFailed() {
    const box = clear(this.el.failed);
    if (!this.failed.length) {
      box.appendChild(h("p", { class: "muted" }, "None."));
      return;
    }
    for (const t of this.failed) {
      const err = t.error ? `${t.error.code || ""}: ${t.error.message || ""}` : "";
      const tail = String(t.output || "").split("\n").slice(-30).join("\n");
      box.appendChild(
        h("details", { class: "failed-task", open: true, dataset: { index: t.index } },
          h("summary", {}, `task #${t.index} · attempt ${t.attempt} · exit ${t.exit_code ?? "—"} · ${err}`),
          h("pre", { class: "tail" }, tail || "(no output)")),
      );
    }
  }

  renderResults() {
    const box = clear(this.el.results);
    const r = this.results;
    if (!r) {
      box.appendChild(h("p", { class: "muted" }, this.ended ? "Loading results…" : "Results show when the job ends."));
      return;
    }
    const s = r.summary || {};
    box.appendChild(h("p", { class: "meta" },
      `completed ${s.completed ?? "—"} · failed ${s.failed ?? "—"} · cancelled ${s.cancelled ?? "—"} · completeness ${fmtNumber(r.completeness)}`
        + (s.duration_s ? ` · ${fmtSeconds(s.duration_s)}` : "")));
    if (r.aggregate_result !== null && r.aggregate_result !== undefined && this.job.type !== "sweep") {
      box.appendChild(h("h3", {}, "Aggregate result"));
      box.appendChild(h("pre", { class: "json", id: "aggregate" }, shortJson(r.aggregate_result, 4000)));
    }
    const rows = r.results.slice(0, 50).map((x) =>
      h("tr", { class: "row-" + x.status }, h("td", {}, String(x.index)), h("td", {}, h("span", { class: `badge status-${x.status}` }, x.status)),
        h("td", { class: "json" }, x.result === undefined ? "—" : shortJson(x.result, 160))));
    box.appendChild(h("table", { class: "grid", id: "results-table" },
      h("thead", {}, h("tr", {}, h("th", {}, "#"), h("th", {}, "Status"), h("th", {}, "Result"))),
      h("tbody", {}, rows)));
    if (r.results.length > 50 || r.next_cursor) box.appendChild(h("p", { class: "muted small" }, "First 50 elements shown; GET /api/v1/results/:id has them all."));
  }
}

function stat(name, value, id) {
  return h("div", { class: "stat", id: id ? `stat-${id}` : undefined }, h("span", { class: "stat-name" }, name), h("span", { class: "stat-value" }, String(value)));
}
