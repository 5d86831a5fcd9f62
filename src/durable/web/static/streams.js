// A run's streams, each followed live from its first chunk to its end.
//
// The default stream is followed from the start (its chunks may come before the run's next
// change says it exists), the others as the run lists them; a stream is shown once it has a
// chunk, so a run that streams nothing shows no empty boxes. A browser keeps few connections
// per server (six over HTTP/1.1), so at most MAX_LIVE streams are followed at once; the rest
// wait behind a button.

import { follow, runPath } from "./api.js";
import { el } from "./dom.js";

const MAX_LIVE = 3;
const MAX_SHOWN = 2000;  // chunks kept on the page per stream (the oldest go first)

export class Streams {
  constructor(container, empty) {
    this.container = container;
    this.empty = empty;
    this.boxes = new Map();  // namespace -> {box, source, ...}
    this.runId = null;
  }

  open(runId) {
    this.close();
    this.runId = runId;
    this.container.replaceChildren(this.empty);
    this.empty.hidden = false;
    this.add("default");
  }

  close() {
    for (const box of this.boxes.values()) if (box.source) box.source.close();
    this.boxes.clear();
  }

  render(run) {
    for (const { namespace } of run.streams) this.add(namespace);
  }

  live() { return [...this.boxes.values()].filter((b) => b.source).length; }

  add(namespace) {
    if (this.boxes.has(namespace) || namespace.startsWith("$")) return;  // "$..." streams are internal
    const list = el("ol", { start: "0" });
    const state = el("span", { class: "muted state" });
    const count = el("span", { class: "muted count" });
    const box = el("div", { class: "stream", "data-namespace": namespace, hidden: true },
      el("h4", {}, el("code", { text: namespace }), " ", count, " ", state), list);
    this.container.append(box);
    const entry = { box, list, state, count, source: null, chunks: 0 };
    this.boxes.set(namespace, entry);
    if (this.live() < MAX_LIVE) this.start(namespace, entry);
    else {
      box.hidden = false;
      this.empty.hidden = true;
      state.textContent = "";
      box.append(el("button", { type: "button", text: "Follow this stream", onclick: (event) => { event.target.remove(); this.start(namespace, entry); } }));
    }
  }

  start(namespace, entry) {
    entry.state.textContent = "live";
    const path = runPath(this.runId, "streams", namespace);
    entry.source = follow(path, {}, {
      message: (chunk, event) => {
        entry.chunks += 1;
        entry.box.hidden = false;
        this.empty.hidden = true;
        entry.count.textContent = `${entry.chunks} chunk${entry.chunks === 1 ? "" : "s"}`;
        entry.list.append(el("li", { class: "chunk", value: event.lastEventId, text: typeof chunk === "string" ? chunk : JSON.stringify(chunk) }));
        if (entry.list.children.length > MAX_SHOWN) entry.list.firstElementChild.remove();
        entry.list.scrollTop = entry.list.scrollHeight;
      },
      end: (info) => {
        entry.source.close();
        entry.source = null;
        entry.state.textContent = info && info.error ? `ended with an error: ${info.error}` : "ended";
        entry.state.className = info && info.error ? "error state" : "muted state";
        entry.box.dataset.ended = "true";
        this.next();
      },
    });
  }

  /** A followed stream ended: follow the next one waiting, if any. */
  next() {
    for (const [namespace, entry] of this.boxes) {
      if (!entry.source && !entry.box.dataset.ended && this.live() < MAX_LIVE) {
        const button = entry.box.querySelector("button");
        if (button) button.remove();
        this.start(namespace, entry);
      }
    }
  }
}
