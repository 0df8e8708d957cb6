// A small client of Flue's public HTTP API and admin API: what the playground uses, and a
// readable example of one. Streams are Durable Streams read as Server-Sent Events through
// fetch() (not EventSource), so requests can carry "Authorization: Bearer".

const base = location.pathname.replace(/\/_flue(\/.*)?$/, "");  // the mount prefix (flue start --prefix)

export class ApiError extends Error {
  constructor(status, envelope) {
    const e = envelope?.error ?? {};
    super(e.message ? `${e.message}${e.details ? " " + e.details : ""}` : `HTTP ${status}`);
    this.status = status;
    this.type = e.type ?? "http_error";
  }
}

export class Api {
  constructor() {
    this.admin = base + "/admin";
    this.auth = false;
    this.dev = false;
    this.onUnauthorized = null;  // async (scope) => boolean: ask for a token, true to retry
  }

  async init() {
    const res = await fetch(`${base}/_flue/config.json`, { cache: "no-store" });
    const cfg = await res.json();
    Object.assign(this, { admin: cfg.admin, auth: cfg.auth, dev: cfg.dev });
  }

  token(scope) {
    return sessionStorage.getItem(`flue-token:${scope}`) ?? sessionStorage.getItem("flue-token:admin");
  }

  setToken(scope, value) {
    sessionStorage.setItem(`flue-token:${scope}`, value);
  }

  headers(scope, extra = {}) {
    const token = this.token(scope);
    return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
  }

  // fetch with the scope's token; on 401 ask for one (once) and retry
  async request(scope, url, init = {}) {
    for (let attempt = 0; ; attempt++) {
      const res = await fetch(url, { ...init, headers: this.headers(scope, init.headers) });
      if (res.status === 401 && attempt === 0 && this.onUnauthorized && await this.onUnauthorized(scope)) continue;
      return res;
    }
  }

  async json(scope, url, init) {
    const res = await this.request(scope, url, init);
    const body = res.status === 204 ? null : await res.json().catch(() => null);
    if (!res.ok) throw new ApiError(res.status, body);
    return body;
  }

  // GET <admin>/project with If-None-Match: null when the revision did not change
  async project(revision) {
    const res = await this.request("admin", `${this.admin}/project`,
      { headers: revision ? { "If-None-Match": `"${revision}"` } : {}, cache: "no-store" });
    if (res.status === 304) return null;
    const body = await res.json().catch(() => null);
    if (!res.ok) throw new ApiError(res.status, body);
    return body;
  }

  runs(limit = 25) {
    return this.json("admin", `${this.admin}/runs?limit=${limit}`);
  }

  run(runId) {
    return this.json("admin", `${this.admin}/runs/${encodeURIComponent(runId)}`);
  }

  agentUrl(name, id) {
    return `${base}/agents/${encodeURIComponent(name)}/${encodeURIComponent(id)}`;
  }

  runUrl(runId) {
    return `${base}/runs/${encodeURIComponent(runId)}`;
  }

  // POST /agents/<name>/<id>: 202 {streamUrl, offset, submissionId}
  prompt(name, id, message, session) {
    const body = { message };
    if (session && session !== "default") body.session = session;
    return this.json(`agent:${name}`, this.agentUrl(name, id), {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
  }

  // POST /workflows/<name>: 202 {runId, streamUrl, offset}
  startWorkflow(name, payload) {
    return this.json(`workflow:${name}`, `${base}/workflows/${encodeURIComponent(name)}`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload),
    });
  }
}

// Follow a Durable Stream from `offset` ("-1": the start) with live=sse, reconnecting from the
// last streamNextOffset when the server ends a response (it does every 60 s). Calls
// onEvents(events) for each batch, onStatus(kind) with "live", "closed", "missing" (404: an agent
// instance before its first prompt) or "error". Returns {stop()}.
export function follow(api, scope, url, { offset = "-1", onEvents, onStatus = () => {} }) {
  const abort = new AbortController();
  let stopped = false;
  let failures = 0;

  async function once() {
    const sep = url.includes("?") ? "&" : "?";
    const res = await api.request(scope, `${url}${sep}offset=${encodeURIComponent(offset)}&live=sse`,
      { signal: abort.signal, headers: { Accept: "text/event-stream" } });
    if (res.status === 404) { onStatus("missing"); return "missing"; }
    if (!res.ok) throw new ApiError(res.status, await res.json().catch(() => null));
    onStatus("live");
    failures = 0;
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return "ended";
      buffer += value.replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const frame = parseFrame(buffer.slice(0, cut));
        buffer = buffer.slice(cut + 2);
        if (frame.event === "data" && frame.data) onEvents(JSON.parse(frame.data));
        if (frame.event === "control" && frame.data) {
          const control = JSON.parse(frame.data);
          offset = control.streamNextOffset ?? offset;
          if (control.streamClosed) { onStatus("closed"); return "closed"; }
        }
      }
    }
  }

  (async () => {
    while (!stopped) {
      try {
        const how = await once();
        if (how === "closed" || how === "missing") return;
      } catch (err) {
        if (stopped) return;
        onStatus("error", err);
        failures++;
        await new Promise((r) => setTimeout(r, Math.min(5000, 500 * 2 ** failures)));
      }
    }
  })();
  return { stop() { stopped = true; abort.abort(); } };
}

function parseFrame(text) {
  const frame = { event: "message", data: "" };
  const data = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") frame.event = value;
    else if (field === "data") data.push(value);
  }
  frame.data = data.join("\n");
  return frame;
}
