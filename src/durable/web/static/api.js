// Talking to the server: JSON requests, the token login, and live feeds (EventSource).
//
// Authentication: the API token is sent once, in the body of POST /login, which answers with an
// HttpOnly session cookie; fetch and EventSource then ride on that cookie. The token never
// travels in a URL (access logs keep URLs) and is never stored by the page. Writes are JSON
// from this page's own origin, which is what the server's guard lets through.

import { byId } from "./dom.js";

export const BASE = document.querySelector('meta[name="durable-base"]').content;

export class ApiError extends Error {
  constructor(status, data) {
    super(data.error || `HTTP ${status}`);
    this.status = status;
    this.data = data;
  }
}

export function apiURL(path, params = {}) {
  const url = new URL(BASE + path, location.href);
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  return url;
}

export function runPath(runId, ...rest) {
  return ["runs", encodeURIComponent(runId), ...rest.map(encodeURIComponent)].join("/");
}

async function send(method, path, body, params) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  return fetch(apiURL(path, params), {
    method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body),
  });
}

/** A JSON request; a 401 asks for the token and tries again; another error throws an ApiError. */
export async function api(method, path, { body, params } = {}) {
  const response = await send(method, path, body, params);
  const data = await response.json().catch(() => ({}));
  if (response.status === 401 && path !== "login") {
    await askToken();
    return api(method, path, { body, params });
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export async function login(token) {
  const response = await send("POST", "login", { token });
  return response.ok;
}

let loginDone = null;  // the promise every request that met a 401 waits on

function askToken() {
  if (loginDone) return loginDone;
  const form = byId("login-form");
  const input = byId("login-token");
  const message = byId("login-message");
  form.hidden = false;
  input.focus();
  setConnection("needs the API token");
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

export function setConnection(text) { byId("connection").textContent = text; }

/** Follow an SSE feed; ``handlers`` maps event names to functions of (parsed data, event). */
export function follow(path, params, handlers) {
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

let workflowsInfo = null;

/** What POST /runs can start here (asked once). */
export async function startable() {
  if (!workflowsInfo) workflowsInfo = api("GET", "workflows");
  try {
    return await workflowsInfo;
  } catch (error) {
    workflowsInfo = null;
    throw error;
  }
}
