// A run's hooks: each one a card that the live feed updates in place (so a payload being typed
// survives the updates), with a JSON form while it waits, what a typed hook expects (its schema
// and an example), the problems the server found in a refused payload, and what it received.

import { api } from "./api.js";
import { el, jsonBlock, pretty, statusBadge, timeCell } from "./dom.js";

export class Hooks {
  constructor(container) {
    this.container = container;
    this.cards = new Map();  // hook id -> {node, parts}
  }

  reset() {
    this.cards.clear();
    this.container.replaceChildren(el("p", { class: "muted", text: "no hooks" }));
  }

  render(run) {
    if (run.hooks.length === 0) return;
    const nodes = run.hooks.map((hook) => {
      let card = this.cards.get(hook.hook_id);
      if (!card) {
        card = this.create(hook);
        this.cards.set(hook.hook_id, card);
      }
      this.update(card, hook);
      return card.node;
    });
    this.container.replaceChildren(...nodes);
  }

  create(hook) {
    const status = el("span");
    const received = el("div", { class: "received" });
    const body = el("div", { class: "hook-body" });
    const kind = hook.schema ? `${hook.kind} · ${hook.schema}` : hook.kind;
    const node = el("div", { class: "hook-card", "data-token": hook.token, "data-hook-id": hook.hook_id },
      el("div", { class: "hook-head" }, el("code", { class: "token", text: hook.token }), " ",
        el("span", { class: "muted", text: kind }), " ", status, " ", el("span", { class: "muted" }, "created ", timeCell(hook.created_at))),
      received, body);
    return { node, status, received, body, form: null };
  }

  update(card, hook) {
    card.node.dataset.status = hook.status;
    card.status.replaceChildren(statusBadge(hook.status));
    card.received.replaceChildren(...(hook.received || []).map((item, i) =>
      el("div", { class: "payload", "data-index": String(i) },
        el("span", { class: "muted" }, "received ", timeCell(item.at)), jsonBlock(item.payload))));
    const waiting = hook.status === "active";
    if (hook.kind === "webhook") {
      if (!card.body.firstChild) {
        card.body.append(el("p", { class: "muted" }, "reached over HTTP at ", el("code", { text: hook.path || "" })));
      }
    } else if (waiting && !card.form) {
      card.form = this.form(hook);
      card.body.replaceChildren(card.form);
    } else if (!waiting && card.form) {
      card.form = null;
      card.body.replaceChildren();
    }
  }

  form(hook) {
    const expected = hook.expected;
    const example = expected && expected.example !== null && expected.example !== undefined ? expected.example : {};
    const input = el("textarea", { class: "payload-input", rows: "3", spellcheck: "false", "aria-label": `payload for ${hook.token}` });
    input.value = pretty(example);
    const problems = el("ul", { class: "problems error" });
    const note = el("span", { class: "note muted" });
    const send = el("button", { type: "submit", text: "Resume" });
    const form = el("form", { class: "hook-form" },
      el("label", { text: "Payload (JSON)" }), input, el("div", { class: "bar" }, send, note), problems);
    if (expected) form.append(this.expectation(hook, expected, input));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      problems.replaceChildren();
      let payload;
      try {
        payload = JSON.parse(input.value);
      } catch (error) {
        note.textContent = "";
        problems.append(el("li", { text: `not JSON: ${error.message}` }));
        return;
      }
      send.disabled = true;
      note.textContent = "sending…";
      try {
        await api("POST", `hooks/${encodeURIComponent(hook.token)}`, { body: payload });
        note.textContent = "sent: the run takes it next";
      } catch (error) {
        note.textContent = "";
        problems.append(el("li", { class: "refusal", text: String(error.message || error) }));
        for (const problem of (error.data && error.data.problems) || []) problems.append(el("li", { text: problem }));
      } finally {
        send.disabled = false;
      }
    });
    return form;
  }

  expectation(hook, expected, input) {
    if (!expected.known) {
      return el("p", { class: "error", text: `This server does not know the hook schema ${hook.schema}, so it refuses payloads for it `
        + "rather than pass them on unchecked: resume it from a process that defines it." });
    }
    if (!expected.json_schema) return el("p", { class: "muted", text: `Checked by ${hook.schema} on the server.` });
    const useExample = el("button", { type: "button", text: "use the example", onclick: () => { input.value = pretty(expected.example); } });
    return el("details", { class: "expected" },
      el("summary", { text: `expected payload (${hook.schema})` }),
      el("div", { class: "bar" }, el("span", { class: "muted", text: "example:" }), el("code", { class: "example", text: JSON.stringify(expected.example) }), useExample),
      el("pre", { class: "json schema", text: pretty(expected.json_schema) }));
  }
}
