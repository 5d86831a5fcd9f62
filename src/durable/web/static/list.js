// The runs list: filters kept in the address (#runs?status=failed&workflow=...), a live page of
// runs, and older pages by cursor. Each filter change is a history entry, so Back restores the
// previous filters and a copied address shows the same runs.

import { api, follow, startable } from "./api.js";
import { byId, el, errorText, morph, placeChildren, seconds, statusBadge, timeCell } from "./dom.js";

const KEYS = ["status", "workflow", "version", "range", "created_after", "created_before", "id_prefix", "cursor"];
const RANGES = { "15m": 15 * 60, "1h": 3600, "24h": 86400, "7d": 7 * 86400 };

export function listHash(params) {
  const query = new URLSearchParams();
  for (const key of KEYS) if (params[key]) query.set(key, params[key]);
  const text = query.toString();
  return text ? `#runs?${text}` : "#";
}

export function parseListHash(hash) {
  const query = new URLSearchParams(hash.startsWith("runs?") ? hash.slice(5) : "");
  return Object.fromEntries(KEYS.map((key) => [key, query.get(key) || ""]));
}

/** The API's query for these filters: a "last hour" range becomes a start time, now. */
function apiQuery(params) {
  const query = { limit: "50" };
  for (const key of ["status", "workflow", "version", "id_prefix", "cursor"]) query[key] = params[key];
  if (params.range in RANGES) query.created_after = new Date(Date.now() - RANGES[params.range] * 1000).toISOString();
  else if (params.range === "custom") Object.assign(query, { created_after: params.created_after, created_before: params.created_before });
  return query;
}

// datetime-local inputs speak local time without a zone; the address keeps UTC.
function toLocalInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function fromLocalInput(value) { return value ? new Date(value).toISOString() : ""; }

export class RunsList {
  constructor() {
    this.source = null;
    this.params = parseListHash("");
    this.seenWorkflows = new Set();
    this.rows = new Map();  // run id -> its row
    const form = byId("filters");
    form.addEventListener("submit", (event) => { event.preventDefault(); this.apply(); });
    for (const id of ["status-filter", "range-filter", "after-filter", "before-filter"]) {
      byId(id).addEventListener("change", () => this.apply());
    }
    for (const id of ["workflow-filter", "version-filter", "id-filter"]) byId(id).addEventListener("change", () => this.apply());
  }

  /** The filters as the form now says, into the address (a new history entry; hashchange shows them). */
  apply() {
    const range = byId("range-filter").value;
    const next = {
      status: byId("status-filter").value,
      workflow: byId("workflow-filter").value.trim(),
      version: byId("version-filter").value.trim(),
      range,
      created_after: range === "custom" ? fromLocalInput(byId("after-filter").value) : "",
      created_before: range === "custom" ? fromLocalInput(byId("before-filter").value) : "",
      id_prefix: byId("id-filter").value.trim(),
      cursor: "",  // other filters: back to the newest page
    };
    byId("custom-range").hidden = range !== "custom";
    const hash = listHash(next);
    if (hash !== (location.hash || "#")) location.hash = hash;
  }

  show(params) {
    this.params = params;
    byId("list-view").hidden = false;
    document.title = "durable · runs";
    byId("status-filter").value = params.status;
    byId("workflow-filter").value = params.workflow;
    byId("version-filter").value = params.version;
    byId("range-filter").value = params.range in RANGES || params.range === "custom" ? params.range : "";
    byId("custom-range").hidden = params.range !== "custom";
    byId("after-filter").value = toLocalInput(params.created_after);
    byId("before-filter").value = toLocalInput(params.created_before);
    byId("id-filter").value = params.id_prefix;
    byId("clear-filters").hidden = !KEYS.some((key) => params[key]);
    byId("version-filter-label").hidden = !params.version && !byId("runs").classList.contains("with-versions");
    this.close();
    this.source = follow("live/runs", apiQuery(params), { runs: (page) => this.render(page) });
    this.source.addEventListener("error", () => this.checkQuery(params));
  }

  /** A feed refused at once (a bad date, an unknown cursor) says why in the note. */
  async checkQuery(params) {
    if (this.source && this.source.readyState !== EventSource.CLOSED) return;
    try {
      await api("GET", "runs", { params: { ...apiQuery(params), limit: "1" } });
    } catch (error) {
      byId("page-note").textContent = String(error.message || error);
    }
  }

  close() {
    if (this.source) this.source.close();
    this.source = null;
  }

  hide() {
    this.close();
    byId("list-view").hidden = true;
  }

  render(page) {
    const { runs } = page;
    const table = byId("runs");
    const versions = runs.some((run) => run.version) || Boolean(this.params.version);
    table.classList.toggle("with-versions", versions);
    byId("version-filter-label").hidden = !versions;
    const filtered = ["status", "workflow", "version", "range", "id_prefix"].some((key) => this.params[key]);
    const empty = byId("runs-empty");
    empty.hidden = runs.length > 0;
    empty.textContent = filtered || this.params.cursor ? "No runs match these filters on this page." : "No runs yet.";
    // Rows are kept per run and only changed where the run changed: a click lands whatever the feed does.
    const rows = new Map();
    for (const run of runs) {
      const kept = this.rows.get(run.run_id);
      rows.set(run.run_id, kept ? morph(kept, this.row(run)) : this.row(run));
    }
    this.rows = rows;
    placeChildren(table.querySelector("tbody"), [...rows.values()]);
    for (const run of runs) this.noteWorkflow(run.workflow);

    const older = byId("older-page");
    older.hidden = !page.next_cursor;
    if (page.next_cursor) older.href = listHash({ ...this.params, cursor: page.next_cursor });
    const newest = byId("newest-page");
    newest.hidden = !this.params.cursor;
    newest.href = listHash({ ...this.params, cursor: "" });
    const searched = page.searched ? `looked at ${page.searched} run${page.searched === 1 ? "" : "s"}` : "";
    byId("page-note").textContent = runs.length
      ? `${runs.length} run${runs.length === 1 ? "" : "s"}${searched ? ` (${searched})` : ""}`
      : searched;
  }

  row(run) {
    const link = `#run/${encodeURIComponent(run.run_id)}`;
    const workflow = el("td", { class: "workflow" }, el("span", { class: "name", title: run.workflow, text: run.workflow }));
    if (run.forked_from) workflow.append(el("div", { class: "muted small", text: `fork of ${run.forked_from.run_id}` }));
    if (run.error) workflow.append(el("div", { class: "error small", title: errorText(run.error), text: errorText(run.error) }));
    return el("tr", { class: "run", "data-run-id": run.run_id, "data-status": run.status, onclick: (event) => {
      if (!event.target.closest("a")) location.hash = link;
    } },
    el("td", { class: "id" }, el("a", { href: link, title: run.run_id }, el("code", { text: run.run_id }))),
    workflow,
    el("td", { class: "version", text: run.version || "" }),
    el("td", {}, statusBadge(run.status), run.queue && run.queue.waiting
      ? el("div", { class: "muted small", title: run.queue.why || "", text: `queue ${run.queue.name}` }) : ""),
    el("td", { class: "created" }, timeCell(run.created_at)),
    el("td", { class: "duration", text: seconds(run.duration) }));
  }

  noteWorkflow(name) {
    if (!name || this.seenWorkflows.has(name)) return;
    this.seenWorkflows.add(name);
    byId("workflow-names").append(el("option", { value: name }));
  }
}

// -- the start form ------------------------------------------------------------------------------

/** Show the start form only when this server can start something, with what it can start. */
export async function setUpStartForm(list) {
  const { can_start: canStart, workflows, definitions = [] } = await startable();
  const form = byId("start-form");
  form.hidden = !canStart || workflows.length === 0;
  const select = byId("start-workflow");
  select.replaceChildren(...workflows.map((name) => el("option", { value: name, text: name })));
  for (const name of workflows) list.noteWorkflow(name);
  const hint = () => {
    const found = definitions.find((d) => d.name === select.value);
    const names = found && Array.isArray(found.parameters) ? found.parameters.map((p) => p.name).filter(Boolean) : [];
    byId("start-hint").textContent = names.length ? `parameters: ${names.join(", ")}` : "";
  };
  select.addEventListener("change", hint);
  hint();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const message = byId("start-message");
    try {
      const args = JSON.parse(byId("start-args").value || "[]");
      const kwargs = JSON.parse(byId("start-kwargs").value || "{}");
      const { run_id: runId } = await api("POST", "runs", { body: { workflow: select.value, args, kwargs } });
      message.textContent = "";
      location.hash = `run/${encodeURIComponent(runId)}`;
    } catch (error) {
      message.textContent = String(error.message || error);
    }
  });
}
