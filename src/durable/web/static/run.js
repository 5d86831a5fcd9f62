// One run (#run/<id>, #run/<id>/step/<step id>): its state, what it waits for, its outcome, the
// timeline, hooks, streams and event log, all following the run's live feed; and its actions:
// cancel (after a confirmation) and run again with the same input.

import { ApiError, api, follow, runPath, setConnection, startable } from "./api.js";
import { EventLog } from "./events.js";
import { Hooks } from "./hooks.js";
import { StepPanel } from "./step.js";
import { Streams } from "./streams.js";
import { MAX_LANES, renderTimeline } from "./timeline.js";
import {
  TERMINAL, byId, definitionList, el, errorBlock, jsonBlock, relative, seconds, statusBadge, timeCell,
} from "./dom.js";

export class RunView {
  constructor() {
    this.runId = null;
    this.run = null;
    this.source = null;
    this.ticker = null;
    this.hooks = new Hooks(byId("hooks"));
    this.streams = new Streams(byId("streams"), byId("streams-empty"));
    this.events = new EventLog();
    this.step = new StepPanel();
    byId("cancel-button").addEventListener("click", () => this.confirmCancel(true));
    byId("cancel-no").addEventListener("click", () => this.confirmCancel(false));
    byId("cancel-yes").addEventListener("click", () => this.cancel());
    byId("again-button").addEventListener("click", () => this.runAgain());
    byId("rerun-button").addEventListener("click", () => forkRun(this.runId, null));
    this.step.onFork = (stepId) => forkRun(this.runId, stepId);
  }

  /** Show ``runId`` (and ``stepId`` in the side panel); the same run stays connected as it is. */
  async show(runId, stepId) {
    if (runId === this.runId) {
      this.step.show(runId, stepId);
      this.highlight(stepId);
      return;
    }
    this.close();
    this.runId = runId;
    this.stepId = stepId;
    document.title = `${runId} · durable`;
    let run;
    try {
      run = await api("GET", runPath(runId));
    } catch (error) {
      if (runId !== this.runId) return;
      this.missing(runId, error);
      return;
    }
    if (runId !== this.runId) return;  // another route was taken meanwhile
    this.reset(runId);
    byId("run-view").hidden = false;
    this.render(run);
    this.step.show(runId, stepId);
    this.source = follow(`live/${runPath(runId)}`, {}, {
      run: (update) => this.render(update),
      end: () => {
        this.source.close();
        this.source = null;
        setConnection("run ended");
      },
    });
  }

  missing(runId, error) {
    byId("missing-view").hidden = false;
    byId("missing-id").textContent = runId;
    const notFound = error instanceof ApiError && error.status === 404;
    byId("missing-view").querySelector("h2").firstChild.textContent = notFound ? "No run with id " : "Could not read run ";
    byId("missing-detail").textContent = notFound ? "It may have been typed wrong, or it lives in another store." : String(error.message || error);
    document.title = `no run ${runId} · durable`;
    setConnection(notFound ? "" : "error");
  }

  reset(runId) {
    byId("run-id").textContent = runId;
    const status = byId("run-status");
    status.textContent = "";
    status.className = "status";
    delete status.dataset.status;
    for (const id of ["run-meta", "run-waiting", "run-outcome", "timeline", "timeline-note", "action-message"]) byId(id).replaceChildren();
    byId("cancel-confirm").hidden = true;
    this.hooks.reset();
    this.streams.open(runId);
    this.events.open(runId);
  }

  close() {
    if (this.source) this.source.close();
    this.source = null;
    clearInterval(this.ticker);
    this.ticker = null;
    this.streams.close();
    this.step.close();
    this.runId = null;
    this.run = null;
    byId("run-view").hidden = true;
    byId("missing-view").hidden = true;
  }

  render(run) {
    this.run = run;
    const status = byId("run-status");
    status.textContent = run.status;
    status.className = `status ${run.status}`;
    status.dataset.status = run.status;
    const ended = TERMINAL.has(run.status);
    byId("cancel-button").hidden = ended;
    byId("rerun-button").hidden = !(run.status === "failed" || run.status === "cancelled");
    if (ended) byId("cancel-confirm").hidden = true;
    this.renderAgain(run);
    this.renderMeta(run);
    this.renderOutcome(run);
    this.renderLive();
    this.hooks.render(run);
    this.renderValues(run);
    this.renderChildren(run);
    this.streams.render(run);
    byId("streams-empty").textContent = ended ? "this run streamed nothing" : "nothing streamed yet";
    this.events.refresh();
    this.step.runChanged();
    if (!ended && !this.ticker) this.ticker = setInterval(() => this.renderLive(), 1000);
    if (ended && this.ticker) { clearInterval(this.ticker); this.ticker = null; }
  }

  /** What moves with the clock: the timeline's "now" end and the countdowns. */
  renderLive() {
    const run = this.run;
    if (!run) return;
    const now = Date.now();
    const count = renderTimeline(byId("timeline"), run, { now, selected: this.stepId, onOpenStep: (stepId) => {
      location.hash = `run/${encodeURIComponent(run.run_id)}/step/${encodeURIComponent(stepId)}`;
    } });
    byId("timeline-note").textContent = count > MAX_LANES ? `(the first ${MAX_LANES} of ${count})` : "";
    this.renderWaiting(run, now);
  }

  highlight(stepId) {
    this.stepId = stepId;
    for (const lane of byId("timeline").querySelectorAll(".lane")) lane.classList.toggle("selected", lane.dataset.laneId === stepId);
  }

  renderMeta(run) {
    const input = run.input;
    const args = input ? el("code", { class: "input", text: argsText(input) }) : el("span", { class: "muted", text: "not shown (pickled)" });
    const queue = run.queue;
    byId("run-meta").replaceChildren(...definitionList([
      ["Workflow", el("code", { text: run.workflow })],
      ["Version", run.version || ""],
      ["Arguments", args],
      ["Parent run", run.parent_run_id ? runLink(run.parent_run_id) : ""],
      ["Forked from", run.forked_from ? el("span", {}, runLink(run.forked_from.run_id), ` at ${run.forked_from.step}`) : ""],
      ["Created", timeCell(run.created_at)],
      ["Started", run.started_at ? timeCell(run.started_at) : el("span", { class: "muted", text: "not yet" })],
      ["Ended", run.completed_at ? timeCell(run.completed_at) : ""],
      ["Duration", seconds(run.duration)],
      ["Deadline", run.deadline ? el("span", {}, timeCell(run.deadline), el("span", { class: "muted", text: " (cancelled if still running then)" })) : ""],
      ["Cancelled", run.cancel_reason || ""],
      ["Queue", queue ? `${queue.name}${queue.waiting ? ` (waiting${queue.why ? `: ${queue.why}` : ""})` : ""}` : ""],
      ["Schedule", run.schedule ? el("span", {}, `${run.schedule.name} @ `, timeCell(run.schedule.scheduled_at)) : ""],
      ["Idempotency key", run.idempotency_key || ""],
    ]));
  }

  /** The run's live values (durable.set_event), when it has any. */
  renderValues(run) {
    const entries = Object.entries(run.values || {});
    byId("values-section").hidden = entries.length === 0;
    byId("values").querySelector("tbody").replaceChildren(...entries.map(([key, value]) =>
      el("tr", { "data-key": key }, el("td", {}, el("code", { text: key })), el("td", {}, el("code", { text: JSON.stringify(value) })))));
  }

  /** The child runs it started (they are lanes of the timeline too). */
  renderChildren(run) {
    const children = run.children || [];
    byId("children-section").hidden = children.length === 0;
    byId("children").querySelector("tbody").replaceChildren(...children.map((child) =>
      el("tr", { "data-run-id": child.run_id },
        el("td", {}, runLink(child.run_id)), el("td", {}, el("code", { text: child.workflow })), el("td", {}, statusBadge(child.status)))));
  }

  /** What an unfinished run waits for: a timer (its deadline, counting down), a hook, a step or its retry. */
  renderWaiting(run, now) {
    const children = (run.children || []).filter((child) => !TERMINAL.has(child.status));
    const queued = run.queue && run.queue.waiting ? [el("li", { "data-kind": "queue" }, `Waiting to be admitted by queue ${run.queue.name}`,
      run.queue.why ? el("span", { class: "muted", text: ` (${run.queue.why})` }) : "")] : [];
    const items = [...queued, ...children.map((child) => el("li", { "data-kind": "child" }, "Child run ", runLink(child.run_id),
      ` (${child.workflow}) is ${child.status}`)), ...(run.waiting_for || []).map((w) => {
      if (w.kind === "timer") {
        return el("li", { class: "timer", "data-kind": "timer" }, "Sleeping until ", timeCell(w.until),
          el("span", { class: "countdown", text: ` — wakes ${relative(w.until, now)}` }), el("span", { class: "muted", text: ` (${w.id})` }));
      }
      if (w.kind === "hook" || w.kind === "webhook") {
        return el("li", { "data-kind": w.kind }, `Waiting for a payload for ${w.kind} `, el("code", { text: w.token }));
      }
      if (w.kind === "retry") {
        return el("li", { "data-kind": "retry" }, "Retrying step ", el("code", { text: w.name }), ` (attempt ${w.attempts + 1} of ${w.max_attempts}) at `,
          timeCell(w.until), el("span", { class: "countdown", text: ` — ${relative(w.until, now)}` }));
      }
      return el("li", { "data-kind": w.kind }, `${w.status === "running" ? "Running" : "About to run"} step `, el("code", { text: w.name || w.id }));
    })];
    const box = byId("run-waiting");
    if (items.length) box.replaceChildren(el("h3", { text: "Waiting for" }), el("ul", { class: "waiting" }, items));
    else box.replaceChildren();
  }

  renderOutcome(run) {
    const outcome = byId("run-outcome");
    if (run.status === "completed") outcome.replaceChildren(el("h3", { text: "Result" }), jsonBlock(run.result, { id: "run-result", fold: 2000 }));
    else if (run.error) outcome.replaceChildren(el("h3", { text: run.status === "cancelled" ? "Cancelled" : "Error" }), errorBlock(run.error, { id: "run-error" }));
    else outcome.replaceChildren();
  }

  // -- actions -----------------------------------------------------------------------------------

  confirmCancel(ask) {
    byId("cancel-confirm").hidden = !ask;
    if (ask) byId("cancel-no").focus();
  }

  async cancel() {
    const message = byId("action-message");
    message.textContent = "";
    byId("cancel-yes").disabled = true;
    try {
      await api("POST", `${runPath(this.runId)}/cancel`, { body: {} });
      byId("cancel-confirm").hidden = true;
    } catch (error) {
      message.textContent = String(error.message || error);
    } finally {
      byId("cancel-yes").disabled = false;
    }
  }

  /** "Run again": a finished run whose input is plain JSON can be started anew with it. */
  async renderAgain(run) {
    const button = byId("again-button");
    const ended = TERMINAL.has(run.status);
    if (!ended) {
      button.hidden = true;
      return;
    }
    let info = { can_start: false, workflows: [] };
    try { info = await startable(); } catch { /* the button stays hidden */ }
    if (this.run !== run) return;
    const exact = run.input && run.input.exact;
    button.hidden = !info.can_start;
    button.disabled = !exact;
    button.title = exact ? `Start a new run of ${run.workflow} with the same arguments`
      : "Its arguments hold values JSON cannot carry (or were pickled): start it again from Python instead";
  }

  async runAgain() {
    const run = this.run;
    const message = byId("action-message");
    message.textContent = "";
    try {
      const { run_id: runId } = await api("POST", "runs", { body: { workflow: run.workflow, args: run.input.args, kwargs: run.input.kwargs } });
      location.hash = `run/${encodeURIComponent(runId)}`;
    } catch (error) {
      message.textContent = String(error.message || error);
    }
  }
}

/** A new run reusing this run's history before ``fromStep`` (null: where a rerun starts), shown at once. */
async function forkRun(runId, fromStep) {
  const message = byId("action-message");
  message.textContent = "";
  try {
    const forked = await api("POST", `${runPath(runId)}/fork`, { body: { from_step: fromStep } });
    location.hash = `run/${encodeURIComponent(forked.run_id)}`;
  } catch (error) {
    message.textContent = String(error.message || error);
  }
}

function runLink(runId) {
  return el("a", { href: `#run/${encodeURIComponent(runId)}` }, el("code", { text: runId }));
}

function argsText({ args, kwargs }) {
  const parts = args.map((a) => JSON.stringify(a));
  for (const [key, value] of Object.entries(kwargs)) parts.push(`${key}=${JSON.stringify(value)}`);
  return `(${parts.join(", ")})`;
}
