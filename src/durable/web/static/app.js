// The live runs page: plain DOM and EventSource, no build step.
// Every value from the server is inserted as text (textContent), never as HTML: chunk
// contents, tokens and error messages cannot inject markup.
"use strict";

const BASE = document.querySelector('meta[name="durable-base"]').content;
const TERMINAL = new Set(["completed", "failed", "cancelled"]);
let closeView = () => {};

// Authentication: the API token is sent once, in the body of POST /login, which answers with an
// HttpOnly session cookie; fetch and EventSource then ride on that cookie. The token never
// travels in a URL (access logs keep URLs) and is never stored by the page.

// -- helpers -------------------------------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

function apiURL(path, params = {}) {
  const url = new URL(BASE + path, location.href);
  for (const [key, value] of Object.entries(params)) if (value) url.searchParams.set(key, value);
  return url;
}

async function post(path, body) {
  return fetch(apiURL(path), {
    method: "POST", credentials: "same-origin",
    headers: { Accept: "application/json", "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const init = { method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body) };
  const response = await fetch(apiURL(path), init);
  const data = await response.json().catch(() => ({}));
  if (response.status === 401) {
    await askToken();
    return api(method, path, body);
  }
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

async function login(token) {
  const response = await post("login", { token });
  return response.ok;
}

let loginDone = null;  // the promise every request that met a 401 waits on

function askToken() {
  if (loginDone) return loginDone;
  const form = document.getElementById("login-form");
  const input = document.getElementById("login-token");
  const message = document.getElementById("login-message");
  form.hidden = false;
  input.focus();
  loginDone = new Promise((resolve) => {
    form.onsubmit = async (event) => {
      event.preventDefault();
      if (await login(input.value.trim())) {
        input.value = "";
        message.textContent = "";
        form.hidden = true;
        loginDone = null;
        resolve();
      } else {
        message.textContent = "wrong token";
      }
    };
  });
  return loginDone;
}

function follow(path, params, handlers) {
  const source = new EventSource(apiURL(path, params));  // same origin: the session cookie goes along
  for (const [name, handler] of Object.entries(handlers)) {
    source.addEventListener(name, (event) => handler(event.data === "" ? null : JSON.parse(event.data), event));
  }
  source.addEventListener("open", () => setConnection("live"));
  source.addEventListener("error", () => {
    setConnection(source.readyState === EventSource.CLOSED ? "disconnected (reload the page)" : "reconnecting…");
  });
  return source;
}

function setConnection(text) { document.getElementById("connection").textContent = text; }

function when(iso) { return iso ? new Date(iso).toLocaleString() : ""; }

function seconds(value) {
  if (value === null || value === undefined) return "";
  return value < 1 ? `${Math.round(value * 1000)} ms` : `${value.toFixed(value < 10 ? 2 : 1)} s`;
}

function statusBadge(status) { return el("span", { class: `status ${status}`, text: status }); }

function replaceRows(tbody, rows, empty = "") {
  if (rows.length === 0 && empty) {
    const columns = tbody.parentElement.querySelectorAll("thead th").length;
    rows = [el("tr", {}, el("td", { colspan: String(columns), class: "muted", text: empty }))];
  }
  tbody.replaceChildren(...rows);
}

// -- the runs list -------------------------------------------------------------------------------

let runsSource = null;

function showList() {
  document.getElementById("list-view").hidden = false;
  document.getElementById("run-view").hidden = true;
  followRuns();
}

function followRuns() {
  if (runsSource) runsSource.close();
  const status = document.getElementById("status-filter").value;
  runsSource = follow("live/runs", { status, limit: "100" }, { runs: renderRuns });
}

function renderRuns(runs) {
  document.getElementById("runs-empty").hidden = runs.length > 0;
  replaceRows(document.querySelector("#runs tbody"), runs.map((run) => {
    const open = () => { location.hash = "run/" + encodeURIComponent(run.run_id); };
    return el("tr", { class: "run", "data-run-id": run.run_id, "data-status": run.status, onclick: open },
      el("td", {}, el("code", { text: run.run_id })),
      el("td", {}, run.workflow, ...(run.forked_from ? [el("span", { class: "muted", text: ` fork of ${run.forked_from.run_id}` })] : [])),
      el("td", { class: "version", text: run.version || "" }),
      el("td", {}, statusBadge(run.status)),
      el("td", { text: when(run.created_at) }),
      el("td", { text: seconds(run.duration) }),
      el("td", { class: "error", text: run.error ? `${run.error.type}: ${run.error.message}` : "" }));
  }));
}

async function setUpStartForm() {
  const { can_start: canStart, workflows } = await api("GET", "workflows");
  const form = document.getElementById("start-form");
  form.hidden = !canStart || workflows.length === 0;
  document.getElementById("start-workflow").replaceChildren(...workflows.map((name) => el("option", { text: name })));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const message = document.getElementById("start-message");
    try {
      const args = JSON.parse(document.getElementById("start-args").value || "[]");
      const kwargs = JSON.parse(document.getElementById("start-kwargs").value || "{}");
      const workflow = document.getElementById("start-workflow").value;
      const { run_id: runId } = await api("POST", "runs", { workflow, args, kwargs });
      message.textContent = "";
      location.hash = "run/" + encodeURIComponent(runId);
    } catch (error) {
      message.textContent = String(error.message || error);
    }
  });
}

// -- one run -------------------------------------------------------------------------------------

function showRun(runId) {
  if (runsSource) { runsSource.close(); runsSource = null; }
  document.getElementById("list-view").hidden = true;
  document.getElementById("run-view").hidden = false;
  document.getElementById("run-id").textContent = runId;
  document.getElementById("run-status").textContent = "";
  for (const id of ["run-meta", "run-outcome", "streams"]) document.getElementById(id).replaceChildren();
  for (const id of ["steps", "hooks", "values", "children"]) replaceRows(document.querySelector(`#${id} tbody`), []);

  const streams = new Map();  // namespace -> EventSource
  const runSource = follow(`live/runs/${encodeURIComponent(runId)}`, {}, {
    run: (run) => {
      renderRun(run);
      for (const { namespace } of run.streams) openStream(runId, namespace, streams);
    },
    end: () => { runSource.close(); setConnection("run ended"); },
  });
  openStream(runId, "default", streams);
  const cancel = document.getElementById("cancel-button");
  cancel.onclick = async () => {
    try { await api("POST", `runs/${encodeURIComponent(runId)}/cancel`, {}); } catch (error) { alert(error.message); }
  };
  document.getElementById("rerun-button").onclick = () => forkRun(runId, null);
  closeView = () => {
    runSource.close();
    for (const source of streams.values()) source.close();
  };
}

// A new run reusing this run's history before a step (null: where a rerun starts), shown at once.
async function forkRun(runId, fromStep) {
  try {
    const forked = await api("POST", `runs/${encodeURIComponent(runId)}/fork`, { from_step: fromStep });
    location.hash = "run/" + encodeURIComponent(forked.run_id);
  } catch (error) { alert(error.message); }
}

function renderRun(run) {
  const status = document.getElementById("run-status");
  status.textContent = run.status;
  status.className = `status ${run.status}`;
  status.dataset.status = run.status;
  document.getElementById("cancel-button").hidden = TERMINAL.has(run.status);
  document.getElementById("rerun-button").hidden = !(run.status === "failed" || run.status === "cancelled");
  const meta = [["Workflow", run.workflow], ["Created", when(run.created_at)], ["Started", when(run.started_at)],
    ["Ended", when(run.completed_at)], ["Duration", seconds(run.duration)]];
  if (run.version) meta.push(["Version", run.version]);
  if (run.forked_from) {
    const source = el("a", { href: "#run/" + encodeURIComponent(run.forked_from.run_id), text: run.forked_from.run_id });
    meta.push(["Forked from", el("span", {}, source, ` at ${run.forked_from.step}`)]);
  }
  if (run.idempotency_key) meta.push(["Idempotency key", run.idempotency_key]);
  if (run.parent_run_id) meta.push(["Parent run", run.parent_run_id]);
  if (run.cancel_reason) meta.push(["Cancelled", run.cancel_reason]);
  if (run.queue) meta.push(["Queue", `${run.queue.name}${run.queue.waiting ? " (waiting)" : ""}`]);
  if (run.schedule) meta.push(["Schedule", `${run.schedule.name} @ ${when(run.schedule.scheduled_at)}`]);
  document.getElementById("run-meta").replaceChildren(...meta.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)]));
  const outcome = document.getElementById("run-outcome");
  if (run.status === "completed") outcome.replaceChildren(el("h3", { text: "Result" }), el("pre", { id: "run-result", text: JSON.stringify(run.result, null, 2) }));
  else if (run.error) outcome.replaceChildren(el("p", { class: "error", text: `${run.error.type}: ${run.error.message}` }));
  else outcome.replaceChildren();
  renderSteps(run);
  renderHooks(run);
  renderValues(run);
  renderChildren(run);
}

function renderValues(run) {
  replaceRows(document.querySelector("#values tbody"), Object.entries(run.values || {}).map(([key, value]) =>
    el("tr", { "data-key": key }, el("td", {}, el("code", { text: key })), el("td", {}, el("code", { text: JSON.stringify(value) })))),
  "no values");
}

function renderChildren(run) {
  replaceRows(document.querySelector("#children tbody"), (run.children || []).map((child) =>
    el("tr", { "data-run-id": child.run_id },
      el("td", {}, el("a", { href: `#run/${encodeURIComponent(child.run_id)}`, text: child.run_id })),
      el("td", { text: child.workflow }),
      el("td", {}, statusBadge(child.status)))),
  "no child runs");
}

function renderSteps(run) {
  const time = (iso) => (iso ? Date.parse(iso) : null);
  const origin = time(run.started_at) ?? time(run.created_at);
  const ends = run.steps.map((s) => time(s.completed_at) ?? Date.now());
  const end = Math.max(time(run.completed_at) ?? Date.now(), ...ends);
  const span = Math.max(1, end - origin);
  replaceRows(document.querySelector("#steps tbody"), run.steps.map((step) => {
    const start = time(step.started_at);
    const track = el("div", { class: "track" });
    if (start !== null) {
      const stop = time(step.completed_at) ?? Date.now();
      const bar = el("div", { class: `bar ${step.status}`, title: `${step.name}: ${seconds((stop - start) / 1000)}` });
      bar.style.left = `${(100 * (start - origin)) / span}%`;
      bar.style.width = `${(100 * (stop - start)) / span}%`;
      track.append(bar);
    }
    const status = el("td", {}, statusBadge(step.status));
    if (step.error) status.append(el("div", { class: "error", text: `${step.error.type}: ${step.error.message}` }));
    if (step.retry_at) status.append(el("div", { class: "muted", text: `retry at ${when(step.retry_at)}` }));
    const fork = el("button", { type: "button", class: "fork", title: "A new run that reuses every step before this one and runs the rest with the code deployed now",
      text: "Fork from here", onclick: () => forkRun(run.run_id, step.step_id) });
    return el("tr", { "data-step-id": step.step_id },
      el("td", {}, el("code", { text: step.name }), el("span", { class: "muted", text: ` ${step.step_id}` })),
      status,
      el("td", { text: `${step.attempts} / ${step.max_attempts}` }),
      el("td", { text: seconds(step.duration) }),
      el("td", { class: "timeline" }, track),
      el("td", {}, fork));
  }), "no steps yet");
}

function renderHooks(run) {
  replaceRows(document.querySelector("#hooks tbody"), run.hooks.map((hook) => {
    const resume = el("td");
    if (hook.status === "active" && hook.kind === "hook") {
      const input = el("input", { value: "{}", "aria-label": `payload for ${hook.token}`, spellcheck: "false" });
      const note = el("span", { class: "muted" });
      const send = async () => {
        try {
          await api("POST", `hooks/${encodeURIComponent(hook.token)}`, JSON.parse(input.value));
          note.textContent = "sent";
        } catch (error) { note.textContent = String(error.message || error); }
      };
      resume.append(input, " ", el("button", { type: "button", text: "Resume", onclick: send }), " ", note);
    } else if (hook.kind === "webhook") {
      resume.append(el("code", { text: hook.path }));
    }
    return el("tr", { "data-token": hook.token },
      el("td", {}, el("code", { text: hook.token })),
      el("td", { text: hook.schema ? `${hook.kind} (${hook.schema})` : hook.kind }),
      el("td", {}, statusBadge(hook.status)),
      resume);
  }), "no hooks");
}

function openStream(runId, namespace, streams) {
  if (streams.has(namespace) || namespace.startsWith("$")) return;  // "$..." streams are internal
  const list = el("ol", { start: "0" });
  const state = el("span", { class: "muted", text: " live" });
  const box = el("div", { class: "stream", "data-namespace": namespace }, el("h4", {}, el("code", { text: namespace }), state), list);
  document.getElementById("streams").append(box);
  const path = `runs/${encodeURIComponent(runId)}/streams/${encodeURIComponent(namespace)}`;
  const source = follow(path, {}, {
    message: (chunk, event) => {
      list.append(el("li", { class: "chunk", value: event.lastEventId, text: JSON.stringify(chunk) }));
      list.scrollTop = list.scrollHeight;
    },
    end: (info) => {
      source.close();
      state.textContent = info && info.error ? ` ended with an error: ${info.error}` : " ended";
      state.className = info && info.error ? "error" : "muted";
      box.dataset.ended = "true";
    },
  });
  streams.set(namespace, source);
}

// -- routing -------------------------------------------------------------------------------------

function route() {
  closeView();
  closeView = () => {};
  const hash = location.hash.slice(1);
  if (hash.startsWith("run/")) showRun(decodeURIComponent(hash.slice(4)));
  else showList();
}

async function boot() {
  const hash = location.hash.slice(1);
  if (hash.startsWith("token=")) {
    // A link like /#token=...: the fragment never reaches the server. Log in with it, then
    // take it out of the address bar (and so out of the history).
    history.replaceState(null, "", location.pathname + location.search);
    await login(decodeURIComponent(hash.slice(6)));  // a wrong one: the login form asks below
  }
  try {
    await setUpStartForm();  // the first API call: asks for the token if the server wants one
  } catch (error) {
    document.getElementById("start-message").textContent = String(error.message || error);
  }
  document.getElementById("status-filter").addEventListener("change", followRuns);
  window.addEventListener("hashchange", route);
  route();
}

boot();
