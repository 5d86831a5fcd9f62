// The event log, payloads decoded: read when its section is opened, then only what is new
// whenever the run changes, a page of events at a time.

import { api, runPath } from "./api.js";
import { byId, compact, el, ms, seconds, when } from "./dom.js";

const PAGE = 500;

export class EventLog {
  constructor() {
    this.section = byId("events-section");
    this.body = byId("events").querySelector("tbody");
    this.more = byId("events-more");
    this.runId = null;
    this.after = 0;
    this.origin = null;
    this.loading = null;
    this.section.addEventListener("toggle", () => { if (this.section.open) this.refresh(); });
    this.more.addEventListener("click", () => this.refresh());
  }

  open(runId) {
    this.runId = runId;
    this.after = 0;
    this.origin = null;
    this.body.replaceChildren();
    this.more.hidden = true;
    byId("events-count").textContent = "";
    if (this.section.open) this.refresh();
  }

  /** Read the events after the last one shown (one read at a time; a change meanwhile reads again after it). */
  async refresh() {
    if (!this.runId || !this.section.open) return;
    if (this.loading) { this.again = true; return; }
    const runId = this.runId;
    this.loading = api("GET", runPath(runId, "events"), { params: { after: String(this.after), limit: String(PAGE) } });
    try {
      const { events, more } = await this.loading;
      if (runId !== this.runId) return;
      for (const event of events) this.body.append(this.row(event));
      if (events.length) this.after = events[events.length - 1].seq;
      this.more.hidden = !more;
      byId("events-count").textContent = `${this.after} event${this.after === 1 ? "" : "s"}${more ? " so far" : ""}`;
    } catch (error) {
      byId("events-count").textContent = String(error.message || error);
    } finally {
      this.loading = null;
      if (this.again) { this.again = false; this.refresh(); }
    }
  }

  row(event) {
    if (this.origin === null) this.origin = ms(event.created_at);
    const offset = (ms(event.created_at) - this.origin) / 1000;
    const about = [event.correlation_id, event.name, event.attempt ? `attempt ${event.attempt}` : ""].filter(Boolean).join(" · ");
    const data = event.data === null || event.data === undefined ? "" : compact(event.data);
    const cell = data.length > 160
      ? el("details", {}, el("summary", { text: `${data.slice(0, 120)}…` }), el("pre", { class: "json", text: JSON.stringify(event.data, null, 2) }))
      : el("code", { text: data });
    return el("tr", { "data-seq": String(event.seq), "data-kind": event.kind },
      el("td", { class: "muted", text: String(event.seq) }),
      el("td", { title: when(event.created_at), text: `+${seconds(offset) || "0 ms"}` }),
      el("td", {}, el("code", { text: event.kind })),
      el("td", { class: "muted", text: about }),
      el("td", { class: "data" }, cell));
  }
}
