// The Flue playground: the project, chats with agents, workflow runs and their events.
// Views are picked by the URL hash: #/ (overview), #/agent/<name>, #/workflow/<name>, #/run/<runId>.
// Everything comes from the HTTP API (api.js); nothing is fetched from elsewhere.

import { Api, ApiError, follow } from "./api.js";
import { formFor } from "./form.js";
import { renderMarkdown } from "./markdown.js";

const api = new Api();
const state = { project: null, revision: null, view: null, runs: [] };
const POLL_MS = 1500;
const RUNS_EVERY = 6;  // polls between two reads of the runs list

// -- DOM helpers ------------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

const $ = (sel) => document.querySelector(sel);
const pretty = (v) => (typeof v === "string" ? v : JSON.stringify(v, null, 2));
const clock = (ts) => (ts ? new Date(ts).toLocaleTimeString([], { hour12: false }) : "");

function toast(text) {
  const el = $("#toast");
  el.textContent = text;
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 2500);
}

function status(text, kind = "") {
  const el = $("#status");
  el.textContent = text;
  el.className = `status ${kind}`;
}

function randomId() {
  return "pg-" + Math.random().toString(36).slice(2, 8);
}

// -- tokens -----------------------------------------------------------------------------------

const declined = new Set();  // scopes whose token request was cancelled: do not ask on every poll

api.onUnauthorized = (scope) => new Promise((resolve) => {
  const dialog = $("#token-dialog");
  if (dialog.open || declined.has(scope)) { resolve(false); return; }
  const form = $("#token-form");
  $("#token-why").textContent = scope === "admin"
    ? "This server wants the admin token (admin: auth in flue.yaml) to show the project."
    : `${scope.replace(":", " ")} wants its own bearer token (http: auth).`;
  form.reset();
  dialog.onclose = () => {
    const token = form.elements.token.value.trim();
    const ok = dialog.returnValue === "ok" && token !== "";
    if (ok) api.setToken(scope, token);
    else declined.add(scope);
    resolve(ok);
  };
  dialog.showModal();
});

// -- the project: sidebar, overview, reloads --------------------------------------------------

async function refreshProject() {
  let doc;
  try {
    doc = await api.project(state.revision);
  } catch (err) {
    status(err instanceof ApiError && err.status === 401 ? "needs a token" : "server unreachable", "bad");
    return;
  }
  if (doc === null) { status(api.dev ? "flue dev · live" : "live", "ok"); return; }
  const failed = (doc.loadErrors ?? []).length > 0;
  const first = state.project === null;
  state.project = doc;
  state.revision = doc.revision;
  status(api.dev ? "flue dev · live" : "live", "ok");
  renderSidebar();
  renderBanner();
  if (first) route();
  else if (failed) toast("The project has errors: still serving the last good version");
  else { toast("Project reloaded"); state.view?.reloaded?.(); }
}

async function refreshRuns() {
  try {
    state.runs = (await api.runs()).items;
  } catch { state.runs = []; }
  renderRuns();
}

function diagnosticsOf(file) {
  return (state.project?.diagnostics ?? []).filter((d) => file && d.file === file);
}

function navItem(href, name, description, extra = []) {
  const active = location.hash === href;
  return h("a", { class: `nav-item${active ? " active" : ""}`, href, dataset: { name } },
    h("span", { class: "nav-name" }, name, ...extra), description ? h("span", { class: "nav-desc" }, description) : null);
}

function renderSidebar() {
  const p = state.project;
  $("#project-root").textContent = p.root;
  const errors = p.diagnostics.filter((d) => d.severity === "error").length;
  const section = (title, count, items, empty) => h("section", { class: "nav-section" },
    h("h3", {}, title, h("span", { class: "count" }, String(count))),
    items.length ? items : h("p", { class: "muted small pad" }, empty));
  $("#sidebar").replaceChildren(
    navItem("#/", "Overview", null, p.diagnostics.length
      ? [h("span", { class: `badge ${errors ? "bad" : "warn"}` }, `${p.diagnostics.length} diagnostic${p.diagnostics.length > 1 ? "s" : ""}`)]
      : []),
    section("Agents", p.agents.length, p.agents.map((a) => navItem(`#/agent/${encodeURIComponent(a.name)}`, a.name,
      a.description, a.http ? [] : [h("span", { class: "badge" }, "not http")])), "no agents/*.md"),
    section("Workflows", p.workflows.length, p.workflows.map((w) => navItem(`#/workflow/${encodeURIComponent(w.name)}`,
      w.name, (w.description ?? "").split("\n")[0], [h("span", { class: "badge" }, w.kind)])), "no workflows"),
    h("section", { class: "nav-section" }, h("h3", {}, "Recent runs",
      h("button", { type: "button", class: "ghost tiny", title: "Refresh", onclick: refreshRuns }, "↻")),
    h("div", { id: "runs" })),
  );
  renderRuns();
}

// flue dev could not reload: the last good project keeps serving; say why
function renderBanner() {
  const errors = state.project.loadErrors ?? [];
  $("#banner").replaceChildren(...(errors.length ? [h("div", { class: "banner" },
    h("strong", {}, "flue dev could not reload the project"), " — it keeps serving the last good version. Fix these and save:",
    h("ul", { class: "diagnostics" }, errors.map(diagnostic)))] : []));
}

function renderRuns() {
  const box = $("#runs");
  if (!box) return;
  box.replaceChildren(...(state.runs.length ? state.runs.map((r) => h("a", {
    class: `nav-item run${location.hash === `#/run/${r.runId}` ? " active" : ""}`, href: `#/run/${r.runId}`,
  }, h("span", { class: "nav-name" }, r.workflowName, h("span", { class: `badge ${r.status === "errored" ? "bad" : r.status === "active" ? "warn" : "ok"}` }, r.status)),
  h("span", { class: "nav-desc" }, `${clock(r.startedAt)} · ${r.runId.slice(-8)}`))) : [h("p", { class: "muted small pad" }, "no runs yet")]));
}

function overview() {
  const p = state.project;
  const table = (cols, rows) => h("table", {}, h("thead", {}, h("tr", {}, cols.map((c) => h("th", {}, c)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c ?? ""))))));
  const diags = p.diagnostics.length
    ? h("ul", { class: "diagnostics" }, p.diagnostics.map(diagnostic))
    : h("p", { class: "ok-text" }, "No diagnostics: the project loads cleanly.");
  const el = h("div", { class: "page" },
    h("h1", {}, "Project"),
    h("p", { class: "muted" }, `${p.root}${p.config ? " · " + p.config : " · no flue.yaml"}`),
    h("h2", {}, "Diagnostics"), diags,
    h("h2", {}, "Agents"), table(["name", "model", "http", "description", "file"],
      p.agents.map((a) => [h("a", { href: `#/agent/${encodeURIComponent(a.name)}` }, a.name), String(a.model ?? "-"),
        a.http ? "yes" : "", a.description, a.file])),
    h("h2", {}, "Workflows"), table(["name", "kind", "http", "description", "file"],
      p.workflows.map((w) => [h("a", { href: `#/workflow/${encodeURIComponent(w.name)}` }, w.name), w.kind,
        w.http ? "yes" : "", (w.description ?? "").split("\n")[0], w.file])),
    h("h2", {}, "Skills"), p.skills.length ? table(["name", "description", "file"],
      p.skills.map((s) => [s.name, s.description, s.file])) : h("p", { class: "muted" }, "none"),
    h("h2", {}, "Channels"), p.channels.length ? table(["name", "kind", "routes", "rules"],
      p.channels.map((c) => [c.name, c.kind, c.routes.map((r) => { const [m, path] = r.split(" "); return `${m} /channels/${c.name}${path}`; }).join("\n"),
        c.rules.map((r) => `${r.on} → ${r.agent}${r.when ? " when " + r.when : ""}`).join("\n")])) : h("p", { class: "muted" }, "none"),
    h("h2", {}, "Plugins"), table(["name", "source", "origin"], p.plugins.map((x) => [x.name, x.source, x.origin])),
  );
  return { el, reloaded: () => show(overview()) };
}

function diagnostic(d) {
  const where = (d.file ?? "<project>") + (d.line ? `:${d.line}` : "");
  return h("li", { class: `diagnostic ${d.severity}` },
    h("div", {}, h("span", { class: `badge ${d.severity === "error" ? "bad" : "warn"}` }, d.severity), " ",
      h("code", {}, where), " ", h("span", { class: "muted small" }, d.code)),
    h("div", {}, d.message), d.hint ? h("div", { class: "hint" }, "hint: ", d.hint) : null);
}

// -- transcripts: messages, streamed text, tool cards -----------------------------------------

class Transcript {
  constructor() {
    this.el = h("div", { class: "transcript" });
    this.current = null;  // the assistant bubble text streams into
    this.tools = new Map();
    this.lastUser = null;
  }

  scroll() {
    const box = this.el.parentElement;
    if (box) box.scrollTop = box.scrollHeight;
  }

  user(text) {
    if (!text || text === this.lastUser) return;
    this.lastUser = text;
    this.current = null;
    this.el.append(h("div", { class: "msg user" }, h("div", { class: "bubble" }, text)));
  }

  assistant() {
    if (!this.current) {
      const text = h("div", { class: "bubble" });
      this.current = text;
      this.el.append(h("div", { class: "msg assistant" }, text));
    }
    return this.current;
  }

  note(text, kind = "") {
    this.el.append(h("div", { class: `note ${kind}` }, text));
  }

  event(e) {
    this.el.querySelector(".note.hint")?.remove();
    switch (e.type) {
      case "submission_admitted":
        this.user(e.input?.message ?? (e.input ? pretty(e.input) : ""));
        break;
      case "message_end": {
        const m = e.message ?? {};
        const text = (m.content ?? []).filter((c) => c.type === "text").map((c) => c.text).join("");
        if (m.role === "user") this.user(text);
        else if (m.role === "assistant") {
          if (text) {
            const bubble = this.assistant();
            bubble.replaceChildren(renderMarkdown(text));  // streamed as plain text, shown as Markdown
            bubble.classList.add("md");
          }
          this.current?.classList.remove("streaming");
          this.current = null;
          this.thinking = null;
        }
        break;
      }
      case "thinking_start":
        this.thinking = h("pre", { class: "thinking-text" });
        this.el.append(h("details", { class: "thinking" }, h("summary", {}, "Thinking"), this.thinking));
        break;
      case "thinking_delta":
        if (!this.thinking) this.event({ type: "thinking_start" });
        this.thinking.append(e.delta ?? "");
        break;
      case "thinking_end":
        if (this.thinking && e.content) this.thinking.textContent = e.content;
        this.thinking = null;
        break;
      case "text_delta": {
        const bubble = this.assistant();
        bubble.dataset.streamed = "1";
        bubble.classList.add("streaming");
        bubble.append(e.text);
        break;
      }
      case "tool_start":
        this.current = null;
        this.toolCard(e);
        break;
      case "tool": {
        const card = this.tools.get(e.toolCallId) ?? this.toolCard(e);
        card.finish(e);
        break;
      }
      case "operation":
        if (e.isError) this.note(`${e.operationKind ?? "operation"} failed: ${e.error?.message ?? "error"}`, "bad");
        else if (e.usage || e.result?.usage) this.el.append(h("div", { class: "meta" }, usageLine(e)));
        break;
      case "submission_settled":
        if (e.outcome === "failed") this.note(`failed: ${e.error?.message ?? "error"}`, "bad");
        break;
      case "log":
        this.note(`${e.level}: ${e.message}`, e.level === "error" ? "bad" : "");
        break;
      default:
    }
  }

  toolCard(e) {
    const state = h("span", { class: "badge warn" }, "running");
    const result = h("pre", { class: "code" }, "…");
    const card = h("details", { class: "tool", dataset: { tool: e.toolName ?? "" } },
      h("summary", {}, h("span", { class: "tool-icon" }, "⚙"), h("span", { class: "tool-name" }, e.toolName ?? "tool"), state,
        h("span", { class: "muted small tool-args" }, summarize(e.args))),
      h("div", { class: "tool-body" }, h("h4", {}, "Arguments"), h("pre", { class: "code" }, pretty(e.args ?? {})),
        h("h4", {}, "Result"), result));
    card.finish = (end) => {
      state.textContent = end.isError ? "error" : `done${end.durationMs !== undefined ? ` · ${Math.round(end.durationMs)} ms` : ""}`;
      state.className = `badge ${end.isError ? "bad" : "ok"}`;
      const content = end.result?.content;
      result.textContent = Array.isArray(content)
        ? content.map((c) => (c.type === "text" ? c.text : pretty(c))).join("\n") : pretty(end.result ?? "");
    };
    this.tools.set(e.toolCallId, card);
    this.el.append(card);
    return card;
  }
}

// "offline/rules · 15 tokens · $0.0001 · 48 ms" under an operation's answer
function usageLine(e) {
  const usage = e.usage ?? e.result?.usage ?? {};
  const model = e.result?.model;
  const parts = [e.operationKind ?? "operation"];
  if (model) parts.push(`${model.provider}/${model.id}`);
  parts.push(`${usage.totalTokens ?? 0} tokens`);
  if (usage.cost?.total) parts.push(`$${usage.cost.total.toFixed(4)}`);
  if (e.durationMs !== undefined) parts.push(`${Math.round(e.durationMs)} ms`);
  return parts.join(" · ");
}

function summarize(args) {
  if (!args || typeof args !== "object") return "";
  const s = Object.entries(args).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(" ");
  return s.length > 80 ? s.slice(0, 79) + "…" : s;
}

// -- the event timeline -----------------------------------------------------------------------

class Timeline {
  constructor() {
    this.list = h("ol", { class: "timeline" });
    this.el = h("div", { class: "timeline-box" }, this.list);
    this.last = null;
  }

  event(e) {
    // consecutive text_delta / thinking_delta events fold into one row
    if (this.last && this.last.type === e.type && (e.type === "text_delta" || e.type === "thinking_delta")) {
      this.last.count++;
      this.last.label.textContent = `${e.type} ×${this.last.count}`;
      this.last.text += e.text ?? e.delta ?? "";
      this.last.detail.textContent = this.last.text;
      return;
    }
    const label = h("span", { class: "ev-type" }, e.type);
    const detail = h("pre", { class: "code" }, e.type.endsWith("_delta") ? (e.text ?? e.delta ?? "") : pretty(e));
    const kind = e.isError || e.outcome === "failed" ? " bad" : "";
    const row = h("li", { class: `ev ev-${e.type}${kind}` }, h("details", {},
      h("summary", {}, h("span", { class: "ev-time" }, clock(e.timestamp)), label, h("span", { class: "muted small" }, brief(e))),
      detail));
    this.list.append(row);
    this.last = { type: e.type, count: 1, label, detail, text: e.text ?? e.delta ?? "" };
    this.el.scrollTop = this.el.scrollHeight;
  }
}

function brief(e) {
  switch (e.type) {
    case "tool_start": case "tool": return e.toolName ?? "";
    case "operation_start": case "operation": return e.operationKind ?? "";
    case "turn": return `${e.provider ?? ""}/${e.model ?? ""} · ${e.usage?.totalTokens ?? 0} tokens`;
    case "run_start": return e.workflowName ?? "";
    case "run_end": return e.isError ? "errored" : `${Math.round(e.durationMs ?? 0)} ms`;
    case "submission_settled": return e.outcome ?? "";
    case "log": return e.message ?? "";
    default: return "";
  }
}

// -- views ------------------------------------------------------------------------------------

function show(view) {
  state.view?.stop?.();
  state.view = view;
  $("#view").replaceChildren(view.el);
  for (const a of document.querySelectorAll(".nav-item")) a.classList.toggle("active", a.getAttribute("href") === (location.hash || "#/"));
}

function agentHeader(a) {
  const chips = [
    h("span", { class: "chip" }, `model ${a.model ?? "-"}`),
    h("span", { class: "chip" }, a.tools === null ? "default tools" : `tools: ${a.tools.join(", ") || "none"}`),
    a.skills.length ? h("span", { class: "chip" }, `skills: ${a.skills.join(", ")}`) : null,
    a.subagents.length ? h("span", { class: "chip" }, `subagents: ${a.subagents.join(", ")}`) : null,
    a.auth ? h("span", { class: "chip" }, "bearer auth") : null,
  ];
  return h("div", { class: "view-head" },
    h("h1", {}, a.name), h("p", { class: "description" }, a.description ?? ""), h("div", { class: "chips" }, chips),
    h("details", { class: "instructions" }, h("summary", {}, `Instructions · ${a.file}`), h("pre", { class: "code" }, a.instructions)),
    h("ul", { class: "diagnostics" }, diagnosticsOf(a.file).map(diagnostic)));
}

function agentView(name) {
  const find = () => state.project.agents.find((a) => a.name === name);
  const a = find();
  if (!a) return notFound(`No agent named ${name}.`);
  const head = h("div", {}, agentHeader(a));
  const el = h("div", { class: "page split" });
  const view = { el, stop() { reader?.stop(); }, reloaded() { const now = find(); if (now) head.replaceChildren(agentHeader(now)); } };
  let reader = null;
  if (!a.http) {
    el.append(h("div", { class: "pane" }, head, h("div", { class: "callout" },
      "This agent is not reachable over HTTP, so the playground cannot talk to it. Add ", h("code", {}, "http: true"),
      ` to the frontmatter of ${a.file} (flue dev reloads it), or reach it as a subagent or from a workflow.`)));
    return view;
  }
  const key = `flue-instance:${name}`;
  const recentKey = `flue-instances:${name}`;
  const recent = () => JSON.parse(localStorage.getItem(recentKey) ?? "[]");
  const known = h("datalist", { id: `instances-${name}` });
  const instance = h("input", { class: "instance", value: localStorage.getItem(key) ?? randomId(), "aria-label": "Instance id",
    spellcheck: "false", list: known.id });
  const transcriptBox = h("div", { class: "chat-scroll" });
  const input = h("textarea", { class: "composer-input", rows: 2, placeholder: `Message ${name}…  (Enter sends, Shift+Enter for a new line)` });
  const send = h("button", { type: "submit" }, "Send");
  const timelineSlot = h("div", { class: "pane timeline-pane" });
  let transcript, timeline, missing = false;

  function open() {
    reader?.stop();
    localStorage.setItem(key, instance.value);
    const ids = [instance.value, ...recent().filter((x) => x !== instance.value)].slice(0, 12);  // the last ones used
    localStorage.setItem(recentKey, JSON.stringify(ids));
    known.replaceChildren(...ids.map((x) => h("option", { value: x })));
    transcript = new Transcript();
    timeline = new Timeline();
    transcriptBox.replaceChildren(transcript.el);
    timelineSlot.replaceChildren(h("h2", {}, "Events ", h("span", { class: "muted small" }, `agents/${name}/${instance.value}`)), timeline.el);
    listen();
  }

  function listen() {
    reader?.stop();
    missing = false;
    reader = follow(api, `agent:${name}`, api.agentUrl(name, instance.value), {
      onEvents(events) {
        for (const e of events) { transcript.event(e); timeline.event(e); if (e.type === "idle" || e.type === "submission_settled") busy(false); }
        transcript.scroll();
      },
      onStatus(kind) {
        if (kind !== "missing") return;
        missing = true;
        transcript.note("A new instance: send a message to start it.", "hint");
      },
    });
  }

  function busy(on) {
    send.disabled = on;
    send.textContent = on ? "Working…" : "Send";
  }

  const form = h("form", { class: "composer", onsubmit: async (ev) => {
    ev.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    busy(true);
    try {
      await api.prompt(name, instance.value, text);
      input.value = "";
      if (missing) listen();  // the stream exists from the first admitted prompt on
    } catch (err) {
      transcript.note(err.message, "bad");
      busy(false);
    }
  } }, input, send);
  input.addEventListener("keydown", (ev) => { if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); form.requestSubmit(); } });
  instance.addEventListener("change", open);

  el.append(
    h("div", { class: "pane chat-pane" }, head,
      h("div", { class: "instance-bar" }, h("label", {}, "Instance ", instance, known),
        h("button", { type: "button", class: "ghost", onclick: () => { instance.value = randomId(); open(); } }, "New instance")),
      transcriptBox, form),
    timelineSlot);
  open();
  return view;
}

function workflowHead(w) {
  return h("div", { class: "view-head" }, h("h1", {}, w.name), h("p", { class: "description" }, w.description ?? ""),
    h("div", { class: "chips" }, h("span", { class: "chip" }, `${w.kind} · ${w.file}`), w.auth ? h("span", { class: "chip" }, "bearer auth") : null),
    h("ul", { class: "diagnostics" }, diagnosticsOf(w.file).map(diagnostic)));
}

function workflowView(name) {
  const find = () => state.project.workflows.find((w) => w.name === name);
  const w = find();
  if (!w) return notFound(`No workflow named ${name}.`);
  const head = h("div", {}, workflowHead(w));
  const el = h("div", { class: "page split" });
  const runSlot = h("div", { class: "pane timeline-pane" }, h("p", { class: "muted" }, "Run the workflow to see its events here."));
  const view = { el, stop() { run?.stop(); }, reloaded() { const now = find(); if (now) { head.replaceChildren(workflowHead(now)); } } };
  let run = null;
  if (!w.http) {
    el.append(h("div", { class: "pane" }, head, h("div", { class: "callout" },
      "This workflow is not reachable over HTTP. Add ", h("code", {}, "http = True"), " (Python) or ", h("code", {}, "http: true"),
      ` (YAML) to ${w.file}, or run it with `, h("code", {}, `flue run ${w.name}`), ".")));
    return view;
  }
  const form = formFor(w.payload, h);
  const error = h("p", { class: "error-text" });
  const submit = h("button", { type: "submit" }, "Run");
  el.append(h("div", { class: "pane" }, head, h("form", { class: "payload-form", onsubmit: async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    let payload;
    try { payload = form.value(); } catch (err) { error.textContent = err.message; return; }
    submit.disabled = true;
    try {
      const admitted = await api.startWorkflow(name, payload);
      run?.stop();
      run = runPanel(admitted.runId, runSlot, name);
      setTimeout(refreshRuns, 300);
    } catch (err) {
      error.textContent = err.message;
    } finally { submit.disabled = false; }
  } }, h("h2", {}, "Payload"), form.el, error, h("div", { class: "actions" }, submit))), runSlot);
  return view;
}

// a run's transcript, events and result, read from offset -1 (a replay) and then live
function runPanel(runId, slot, workflowName = null) {
  const transcript = new Transcript();
  const timeline = new Timeline();
  const result = h("div", { class: "result" }, h("span", { class: "badge warn" }, "running"));
  slot.replaceChildren(
    h("h2", {}, "Run ", h("code", { class: "run-id" }, runId), workflowName ? h("span", { class: "muted small" }, ` ${workflowName}`) : null),
    result,
    h("details", { class: "section", open: true }, h("summary", {}, "Transcript"), h("div", { class: "chat-scroll short" }, transcript.el)),
    h("details", { class: "section", open: true }, h("summary", {}, "Events"), timeline.el));
  // a run's stream is guarded by its workflow's own http: auth, if any
  const reader = follow(api, workflowName ? `workflow:${workflowName}` : "admin", api.runUrl(runId), {
    onEvents(events) {
      for (const e of events) {
        transcript.event(e);
        timeline.event(e);
        if (e.type === "run_start") result.dataset.payload = pretty(e.payload);
        if (e.type === "run_end") {
          result.replaceChildren(
            h("span", { class: `badge ${e.isError ? "bad" : "ok"}` }, e.isError ? "errored" : "completed"),
            h("span", { class: "muted small" }, ` ${Math.round(e.durationMs ?? 0)} ms`),
            h("h4", {}, e.isError ? "Error" : "Result"),
            h("pre", { class: "code result-body" }, pretty(e.isError ? e.error : e.result)));
          refreshRuns();
        }
      }
      transcript.scroll();
    },
    onStatus(kind) { if (kind === "missing") result.replaceChildren(h("span", { class: "badge bad" }, "no such run")); },
  });
  return reader;
}

function runView(runId) {
  const slot = h("div", { class: "pane wide" });
  const el = h("div", { class: "page" }, slot);
  let reader = null;
  api.run(runId).then((record) => {
    reader = runPanel(runId, slot, record.workflowName);
    if (record.payload !== undefined) slot.insertBefore(h("details", { class: "section" }, h("summary", {}, "Payload"),
      h("pre", { class: "code" }, pretty(record.payload))), slot.children[2] ?? null);
  }).catch((err) => slot.replaceChildren(h("p", { class: "error-text" }, err.message)));
  return { el, stop() { reader?.stop(); } };
}

function notFound(text) {
  return { el: h("div", { class: "page" }, h("p", { class: "callout" }, text, " ", h("a", { href: "#/" }, "Back to the project"))) };
}

function route() {
  if (!state.project) return;
  const [, kind, arg] = (location.hash || "#/").match(/^#\/(agent|workflow|run)?\/?(.*)$/) ?? [];
  const name = decodeURIComponent(arg ?? "");
  if (kind === "agent") show(agentView(name));
  else if (kind === "workflow") show(workflowView(name));
  else if (kind === "run") show(runView(name));
  else show(overview());
  renderRuns();
}

// -- start ------------------------------------------------------------------------------------

async function main() {
  await api.init();
  const tokenButton = $("#token-button");
  tokenButton.hidden = !api.auth;
  tokenButton.addEventListener("click", async () => { declined.delete("admin"); if (await api.onUnauthorized("admin")) { state.revision = null; refreshProject(); } });
  window.addEventListener("hashchange", route);
  await refreshProject();
  await refreshRuns();
  // cheap: a 304 unless flue dev reloaded a changed project
  let polls = 0;
  const poll = async () => {
    if (!document.hidden) {
      await refreshProject();
      if (++polls % RUNS_EVERY === 0) await refreshRuns();  // runs started elsewhere (curl, channels)
    }
    setTimeout(poll, POLL_MS);
  };
  setTimeout(poll, POLL_MS);
}

main().catch((err) => status(`failed to start: ${err.message}`, "bad"));
