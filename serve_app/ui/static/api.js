// The API as the page uses it (docs/llms-full.md: "Auth", "Jobs", "Streaming").
// The key lives in sessionStorage and goes out only in the Authorization header: never in a
// URL, a query string or the console.

const KEY_NAME = "computalot.key";

export class AuthError extends Error {}

export class ApiError extends Error {
  constructor(status, envelope) {
    const err = (envelope && envelope.error) || {};
    super(err.message || `HTTP ${status}`);
    this.status = status;
    this.code = err.code || "http_" + status;
  }
}

export function storedKey() {
  return sessionStorage.getItem(KEY_NAME);
}

export function storeKey(key) {
  sessionStorage.setItem(KEY_NAME, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_NAME);
}

function headers(extra) {
  const key = storedKey();
  if (!key) throw new AuthError("signed out");
  return { Authorization: "Bearer " + key, Accept: "application/json", ...extra };
}

async function failure(response) {
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (response.status === 401) return new AuthError((body && body.error && body.error.message) || "unauthorized");
  return new ApiError(response.status, body);
}

/** GET an API path ("/api/v1/…") as JSON; params (an object) become the query string. */
export async function getJson(path, params) {
  const url = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, String(v));
  }
  const response = await fetch(url, { headers: headers(), cache: "no-store" });
  if (!response.ok) throw await failure(response);
  return response.json();
}

/** Every page of a cursor-paged list, up to `max` items (docs/llms-full.md, "Jobs"). */
export async function getPages(path, field, params, max) {
  const items = [];
  let cursor = null;
  do {
    const page = await getJson(path, { ...params, cursor });
    items.push(...page[field]);
    cursor = page.next_cursor;
  } while (cursor && items.length < max);
  return { items: items.slice(0, max), truncated: Boolean(cursor) };
}

/** Split an SSE byte stream into events ({id, event, data}); comments are skipped. */
export class SseParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = "";
    this.reset();
  }

  reset() {
    this.id = null;
    this.event = "message";
    this.data = [];
  }

  push(text) {
    this.buffer += text;
    let nl;
    while ((nl = this.buffer.search(/\r\n|\r|\n/)) >= 0) {
      if (nl === this.buffer.length - 1 && this.buffer[nl] === "\r") break; // "\r\n" cut in two
      const line = this.buffer.slice(0, nl);
      const skip = this.buffer.startsWith("\r\n", nl) ? 2 : 1;
      this.buffer = this.buffer.slice(nl + skip);
      this.line(line);
    }
  }

  line(line) {
    if (line === "") {
      if (this.data.length) {
        let data = this.data.join("\n");
        try {
          data = JSON.parse(data);
        } catch (_) {
          /* keep the text */
        }
        this.onEvent({ id: this.id, event: this.event, data });
      }
      this.reset();
      return;
    }
    if (line.startsWith(":")) return; // heartbeat
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.event = value;
    else if (field === "id") this.id = value;
  }
}

/**
 * Follow an SSE path with fetch() (EventSource cannot send the Authorization header).
 * Reconnects after a dropped connection with Last-Event-ID, so nothing is lost or repeated;
 * stops after `end` or `error`, or when `signal` aborts. Calls handlers.onEvent(evt) and
 * handlers.onState("live" | "reconnecting" | "ended" | "error", detail).
 */
export async function follow(path, handlers, signal) {
  let lastId = null;
  let delay = 500;
  while (!signal.aborted) {
    let finished = false;
    try {
      const extra = { Accept: "text/event-stream" };
      if (lastId !== null) extra["Last-Event-ID"] = lastId;
      const response = await fetch(path, { headers: headers(extra), signal, cache: "no-store" });
      if (!response.ok) throw await failure(response);
      handlers.onState("live");
      delay = 500;
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      const parser = new SseParser((evt) => {
        if (evt.id !== null && evt.id !== "") lastId = evt.id;
        if (evt.event === "end" || evt.event === "error") finished = true;
        handlers.onEvent(evt);
      });
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.push(decoder.decode(value, { stream: true }));
        if (finished) break;
      }
      if (finished) {
        reader.cancel().catch(() => {});
        handlers.onState("ended");
        return;
      }
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof AuthError || (err instanceof ApiError && err.status < 500 && err.status !== 429)) {
        handlers.onState("error", err);
        return;
      }
    }
    if (signal.aborted) return;
    handlers.onState("reconnecting");
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 8000);
  }
}
