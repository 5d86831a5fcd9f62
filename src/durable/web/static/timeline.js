// The waterfall: one lane per step, timer, hook and child run, on the run's time axis.
//
// A step lane shows the wait before its first attempt (queued), each attempt coloured by how it
// ended, and the back-off between attempts; a timer lane runs from the sleep to its firing and
// says its deadline; a hook lane runs until its first payload (a tick per payload). While the
// run is live the axis ends at "now" and the page redraws every second.

import { TERMINAL, el, morph, ms, placeChildren, relative, seconds, statusBadge, when } from "./dom.js";

const NICE_STEPS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800,
  3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800, 2592000];
export const MAX_LANES = 300;

function tickLabel(s) {
  if (s === 0) return "0";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${Number(s.toFixed(2))} s`;
  return seconds(s).replace(/ 0 [smh]$/, "");
}

/** The lanes to draw: the timeline's and the child runs the run lists, in the order they began. */
function lanesOf(run) {
  const lanes = [...((run.timeline && run.timeline.lanes) || [])];
  for (const child of run.children || []) {
    lanes.push({ kind: "child", id: child.run_id, name: child.workflow, status: child.status,
      created_at: child.created_at, ended_at: child.completed_at });
  }
  return lanes.sort((a, b) => ms(a.created_at) - ms(b.created_at));  // stable: the log's order among equals
}

/** Draw the waterfall of ``run`` into ``container``; returns how many lanes the run has. */
export function renderTimeline(container, run, { now = Date.now(), selected = null, onOpenStep } = {}) {
  if (container.laneRows === undefined || container.laneRowsOf !== run.run_id) {
    container.laneRows = new Map();
    container.laneRowsOf = run.run_id;
  }
  const cache = container.laneRows;
  const lanes = lanesOf(run);
  const timeline = run.timeline || {};
  const start = ms(timeline.created_at) ?? ms(run.created_at);
  const live = !TERMINAL.has(run.status);
  let end = live ? now : ms(timeline.ended_at) ?? ms(run.completed_at) ?? now;
  for (const lane of lanes) {
    for (const time of [lane.ended_at, ...(lane.attempts || []).map((a) => a.ended_at)]) {
      if (time) end = Math.max(end, ms(time));
    }
  }
  const span = Math.max(end - start, 1);
  const pos = (time) => `${Math.min(100, Math.max(0, (100 * (time - start)) / span))}%`;
  const width = (a, b) => `${Math.max(0, Math.min(100, (100 * (b - a)) / span))}%`;
  const segment = (cls, from, to, title) => {
    const node = el("div", { class: `seg ${cls}`, title });
    node.style.left = pos(from);
    node.style.width = width(from, to ?? end);
    return node;
  };
  const tick = (at, cls, title) => {
    const node = el("div", { class: `tick ${cls}`, title });
    node.style.left = pos(at);
    return node;
  };

  if (!container.axisRow) container.axisRow = el("div");
  const rows = [morph(container.axisRow, axisRow(span, pos, start))];
  for (const lane of lanes.slice(0, MAX_LANES)) {
    const track = el("div", { class: "track" });
    const facts = el("div", { class: "facts" }, statusBadge(lane.status));
    let label;
    if (lane.kind === "step") {
      label = [el("code", { class: "name", text: lane.name || lane.id }), " ", el("span", { class: "muted", text: lane.id })];
      const attempts = lane.attempts || [];
      const first = attempts.length ? ms(attempts[0].started_at) : null;
      track.append(segment("queued", ms(lane.created_at), first ?? (live ? end : ms(lane.ended_at) ?? end),
        "created, waiting for a worker"));
      attempts.forEach((attempt, i) => {
        const startedAt = ms(attempt.started_at);
        const endedAt = ms(attempt.ended_at);
        const took = seconds(((endedAt ?? end) - startedAt) / 1000);
        const error = attempt.error ? ` — ${attempt.error.type}: ${attempt.error.message}` : "";
        track.append(segment(`attempt ${attempt.outcome}`, startedAt, endedAt, `attempt ${attempt.attempt}: ${attempt.outcome} (${took})${error}`));
        if (attempt.outcome === "retrying" || attempt.outcome === "lost") {
          const next = attempts[i + 1];
          const until = next ? ms(next.started_at) : live ? end : endedAt;
          const retry = attempt.retry_at ? ` (due ${when(attempt.retry_at)})` : "";
          if (endedAt !== null) track.append(segment("backoff", endedAt, until, `waiting to retry${retry}`));
        }
      });
      const last = attempts[attempts.length - 1];
      const duration = lane.ended_at && first !== null ? seconds((ms(lane.ended_at) - first) / 1000) : "";
      facts.append(el("span", { class: "muted", text: ` ${attempts.length} attempt${attempts.length === 1 ? "" : "s"}${duration ? ` · ${duration}` : ""}` }));
      if (last && last.outcome === "retrying" && last.retry_at) facts.append(el("span", { class: "muted", text: ` · retry ${relative(last.retry_at, now)}` }));
    } else if (lane.kind === "timer") {
      label = [el("span", { class: "name", text: "sleep" }), " ", el("span", { class: "muted", text: lane.id })];
      track.append(segment(`timer ${lane.status}`, ms(lane.created_at), ms(lane.ended_at), `sleep until ${when(lane.until)}`));
      if (lane.until) {
        const text = lane.status === "waiting" ? `until ${when(lane.until)} (${relative(lane.until, now)})` : `until ${when(lane.until)}`;
        facts.append(el("span", { class: "muted until", text: ` ${text}` }));
      }
    } else if (lane.kind === "hook") {
      label = [el("span", { class: "name", text: "hook " }), el("code", { text: lane.name || lane.id })];
      track.append(segment(`hook ${lane.status}`, ms(lane.created_at), ms(lane.ended_at), `waiting for a payload for ${lane.name}`));
      for (const at of lane.received || []) track.append(tick(ms(at), "received", `payload received ${when(at)}`));
    } else {
      label = [el("span", { class: "name", text: "child " }),
        el("a", { href: `#run/${encodeURIComponent(lane.id)}`, text: lane.name || lane.id })];
      track.append(segment(`child ${lane.status}`, ms(lane.created_at), ms(lane.ended_at), `child run ${lane.id}`));
    }
    const row = laneRow(cache, lane, onOpenStep);
    const drawn = el("div", { class: `lane ${lane.kind}${selected === lane.id ? " selected" : ""}`, "data-lane-id": lane.id,
      "data-kind": lane.kind, "data-status": lane.status }, el("div", { class: "label" }, label), facts, track);
    if (lane.kind === "step") Object.assign(drawn.dataset, { stepId: lane.id });
    for (const name of ["tabindex", "role", "title"]) if (row.hasAttribute(name)) drawn.setAttribute(name, row.getAttribute(name));
    rows.push(morph(row, drawn));
  }
  if (lanes.length === 0) rows.push(el("p", { class: "muted", text: "nothing has happened yet" }));
  placeChildren(container, rows);
  return lanes.length;
}

/** The row of ``lane``, made once (with its listeners) and kept in ``cache``. */
function laneRow(cache, lane, onOpenStep) {
  const key = `${lane.kind}:${lane.id}`;
  let row = cache.get(key);
  if (row) return row;
  row = el("div", { class: "lane", "data-lane-id": lane.id, "data-kind": lane.kind });
  if (lane.kind === "step") {
    row.dataset.stepId = lane.id;
    row.tabIndex = 0;
    row.setAttribute("role", "button");
    row.title = `open ${lane.name}`;
    const open = () => onOpenStep && onOpenStep(lane.id);
    row.addEventListener("click", (event) => { if (!event.target.closest("a")) open(); });
    row.addEventListener("keydown", (event) => { if (event.key === "Enter" || event.key === " ") { event.preventDefault(); open(); } });
  }
  cache.set(key, row);
  return row;
}

function axisRow(span, pos, start) {
  const seconds_ = span / 1000;
  const step = NICE_STEPS.find((s) => seconds_ / s <= 6) || NICE_STEPS[NICE_STEPS.length - 1];
  const track = el("div", { class: "track axis-track" });
  for (let k = 0; k * step <= seconds_ + 1e-9; k += 1) {
    const mark = el("span", { class: "axis-tick", text: tickLabel(k * step) });
    mark.style.left = pos(start + k * step * 1000);
    track.append(mark);
  }
  return el("div", { class: "lane axis", "aria-hidden": "true" }, el("div", { class: "label muted", text: "since the run was created" }),
    el("div", { class: "facts" }), track);
}
