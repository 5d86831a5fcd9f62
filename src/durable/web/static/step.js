// One step, opened from the timeline (#run/<id>/step/<step id>): its arguments, its result or
// error with the traceback (where the server shows tracebacks), and every attempt with its timings.

import { api, runPath } from "./api.js";
import { TERMINAL, byId, definitionList, el, errorBlock, jsonBlock, seconds, statusBadge, timeCell, when } from "./dom.js";

export class StepPanel {
  constructor() {
    this.panel = byId("step-panel");
    this.body = byId("step-body");
    this.runId = null;
    this.stepId = null;
    this.last = null;
    this.onFork = null;  // (step id) => a new run from this step: set by the run view
  }

  /** Show ``stepId`` of ``runId`` (null: close the panel). */
  show(runId, stepId) {
    byId("step-close").href = `#run/${encodeURIComponent(runId)}`;
    if (!stepId) {
      this.close();
      return;
    }
    if (runId !== this.runId || stepId !== this.stepId) {
      this.runId = runId;
      this.stepId = stepId;
      this.last = null;
      byId("step-title").textContent = stepId;
      this.body.replaceChildren(el("p", { class: "muted", text: "loading…" }));
    }
    this.panel.hidden = false;
    this.refresh();
  }

  close() {
    this.panel.hidden = true;
    this.runId = null;
    this.stepId = null;
    this.last = null;
  }

  /** The run changed: read the step again unless it has ended and was read since. */
  runChanged() {
    if (this.stepId && !(this.last && TERMINAL.has(this.last.status))) this.refresh();
  }

  async refresh() {
    const { runId, stepId } = this;
    if (!stepId) return;
    try {
      const step = await api("GET", runPath(runId, "steps", stepId));
      if (runId === this.runId && stepId === this.stepId) this.render(step);
    } catch (error) {
      if (runId === this.runId && stepId === this.stepId) {
        this.body.replaceChildren(el("p", { class: "error", text: String(error.message || error) }));
      }
    }
  }

  render(step) {
    const text = JSON.stringify(step);
    if (this.last && JSON.stringify(this.last) === text) return;  // unchanged: keep open <details> as they are
    this.last = step;
    byId("step-title").replaceChildren(el("code", { text: step.name }), " ", el("span", { class: "muted", text: step.step_id }));
    const meta = el("dl", { id: "step-meta" }, ...definitionList([
      ["Status", statusBadge(step.status)],
      ["Attempts", `${step.attempts} of at most ${step.max_attempts}`],
      ["Created", timeCell(step.created_at)],
      ["Started", step.started_at ? timeCell(step.started_at) : ""],
      ["Waited to start", step.queued === null ? "" : seconds(step.queued)],
      ["Ended", step.completed_at ? timeCell(step.completed_at) : ""],
      ["Duration", seconds(step.duration)],
      ["Next attempt", step.retry_at ? `${when(step.retry_at)}` : ""],
    ]));
    const parts = [meta, el("h4", { text: "Arguments" }), jsonBlock(step.arguments, { id: "step-arguments" })];
    if (step.status === "completed") parts.push(el("h4", { text: "Result" }), jsonBlock(step.result, { id: "step-result" }));
    if (step.error && step.status !== "completed") parts.push(el("h4", { text: "Error" }), errorBlock(step.error, { id: "step-error" }));
    parts.push(el("h4", { text: "Attempts" }), this.attempts(step.attempt_history));
    if (this.onFork) {
      parts.push(el("p", {}, el("button", { type: "button", class: "fork", text: "Fork from here",
        title: "A new run that reuses every step before this one and runs the rest with the code deployed now",
        onclick: () => this.onFork(step.step_id) })));
    }
    this.body.replaceChildren(...parts);
  }

  attempts(history) {
    if (!history.length) return el("p", { class: "muted", text: "not started yet" });
    const rows = history.map((a) => el("tr", { "data-attempt": String(a.attempt), "data-outcome": a.outcome },
      el("td", { text: String(a.attempt) }),
      el("td", {}, statusBadge(a.outcome)),
      el("td", {}, timeCell(a.started_at)),
      el("td", { text: a.duration === null ? "" : seconds(a.duration) }),
      el("td", {}, errorBlock(a.error), a.retry_at ? el("div", { class: "muted", text: `retried at ${when(a.retry_at)}` }) : "")));
    return el("table", { id: "step-attempts" },
      el("thead", {}, el("tr", {}, ...["#", "Outcome", "Started", "Took", "Error"].map((h) => el("th", { text: h })))),
      el("tbody", {}, rows));
  }
}
