// The job list (docs/llms-full.md, "Jobs"): newest first, re-read every few seconds while shown.

import { getJson, AuthError } from "./api.js";
import { h, clear, fmtTime, kindOf, countsBar } from "./dom.js";

const POLL_MS = 2000;
const PAGE = 50;

export class ListView {
  constructor(root, onAuthError) {
    this.root = root;
    this.onAuthError = onAuthError;
    this.body = root.querySelector("tbody");
    this.more = root.querySelector("#jobs-more");
    this.empty = root.querySelector("#jobs-empty");
    this.updated = root.querySelector("#jobs-updated");
    this.extra = []; // jobs of the pages after the first, loaded on demand
    this.cursor = null;
    this.timer = null;
    this.more.onclick = () => this.loadMore();
  }

  start() {
    this.stopped = false;
    this.tick();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  async tick() {
    try {
      const page = await getJson("/api/v1/jobs", { limit: PAGE });
      if (this.stopped) return;
      if (!this.extra.length) this.cursor = page.next_cursor;
      this.render(page.jobs.concat(this.extra.filter((j) => !page.jobs.some((p) => p.id === j.id))));
      this.updated.textContent = "updated " + new Date().toLocaleTimeString();
    } catch (err) {
      if (err instanceof AuthError) return this.onAuthError(err);
      this.updated.textContent = "could not refresh: " + err.message;
    }
    if (!this.stopped) this.timer = setTimeout(() => this.tick(), POLL_MS);
  }

  async loadMore() {
    if (!this.cursor) return;
    const page = await getJson("/api/v1/jobs", { limit: PAGE, cursor: this.cursor });
    this.extra.push(...page.jobs);
    this.cursor = page.next_cursor;
    this.tick();
  }

  render(jobs) {
    clear(this.body);
    this.empty.hidden = jobs.length > 0;
    this.more.hidden = !this.cursor;
    for (const job of jobs) {
      const counts = job.task_counts || {};
      const { bar, pct, ended, total } = countsBar(counts, `job ${job.id} tasks ended`);
      this.body.appendChild(
        h("tr", { dataset: { job: job.id } },
          h("td", {}, h("a", { href: `#/job/${job.id}`, class: "mono" }, job.id)),
          h("td", {}, kindOf(job)),
          h("td", {}, h("span", { class: `badge status-${job.status}` }, job.status)),
          h("td", { class: "wide" }, h("div", { class: "bar-row compact" }, bar, h("span", { class: "bar-value" }, `${pct}%`))),
          h("td", { class: "num" }, `${ended} / ${total}`),
          h("td", { class: "small" }, fmtTime(job.created_at))),
      );
    }
  }
}
