// A form for a workflow's payload JSON Schema: an input per property of an object schema
// (text, number, checkbox, select for enums, JSON for nested values), or a JSON textarea
// when there is no schema or it is not a flat object. "Edit as JSON" switches to the textarea.
// formFor(schema, h) -> {el, value()}; value() throws with a readable message on bad input.

export function formFor(schema, h) {
  const fields = simpleObject(schema) ? Object.entries(schema.properties ?? {}) : null;
  const required = new Set(schema?.required ?? []);
  const json = h("textarea", { class: "json-input", rows: 6, spellcheck: "false", name: "payload",
    "aria-label": "Payload (JSON)" }, fields ? "" : exampleFor(schema));
  const wrap = h("div", { class: "form-fields" });
  let mode = fields ? "form" : "json";
  const inputs = [];

  for (const [name, prop] of fields ?? []) {
    const id = `field-${name}`;
    const type = typeOf(prop);
    let input;
    if (Array.isArray(prop.enum)) {
      input = h("select", { id, name }, required.has(name) ? null : h("option", { value: "" }, "—"),
        prop.enum.map((v) => h("option", { value: JSON.stringify(v) }, String(v))));
    } else if (type === "boolean") {
      input = h("input", { id, name, type: "checkbox", checked: prop.default === true });
    } else if (type === "number" || type === "integer") {
      input = h("input", { id, name, type: "number", step: type === "integer" ? "1" : "any", min: prop.minimum, max: prop.maximum,
        value: prop.default ?? "" });
    } else if (type === "string") {
      const long = (prop.maxLength ?? 1000) > 200 && !prop.format;
      input = long
        ? h("textarea", { id, name, rows: 3 }, prop.default ?? "")
        : h("input", { id, name, type: "text", value: prop.default ?? "" });
    } else {
      input = h("textarea", { id, name, rows: 3, class: "json-input", spellcheck: "false" },
        prop.default !== undefined ? JSON.stringify(prop.default, null, 2) : "");
    }
    inputs.push({ name, prop, type, input });
    wrap.append(h("label", { class: "field", for: id },
      h("span", { class: "field-name" }, name, required.has(name) ? h("span", { class: "req", title: "required" }, " *") : null,
        h("span", { class: "muted small" }, ` ${Array.isArray(prop.enum) ? "one of" : type ?? "JSON"}`)),
      input, prop.description ? h("span", { class: "muted small" }, prop.description) : null));
  }

  function collect(strict = true) {
    const out = {};
    for (const { name, prop, type, input } of inputs) {
      if (Array.isArray(prop.enum)) { if (input.value !== "") out[name] = JSON.parse(input.value); continue; }
      if (type === "boolean") { out[name] = input.checked; continue; }
      const raw = input.value;
      if (raw === "") { if (strict && required.has(name)) throw new Error(`${name} is required.`); continue; }
      if (type === "number" || type === "integer") out[name] = Number(raw);
      else if (type === "string") out[name] = raw;
      else {
        try { out[name] = JSON.parse(raw); } catch { if (strict) throw new Error(`${name} is not valid JSON.`); }
      }
    }
    return out;
  }

  const toggle = h("button", { type: "button", class: "ghost tiny" }, "Edit as JSON");
  toggle.addEventListener("click", () => {
    if (mode === "form") {
      json.value = JSON.stringify(collect(false), null, 2);
      mode = "json";
    } else mode = "form";
    render();
  });
  const body = h("div", {});
  const schemaView = schema
    ? h("details", { class: "schema" }, h("summary", {}, "Payload schema"), h("pre", { class: "code" }, JSON.stringify(schema, null, 2)))
    : h("p", { class: "muted small" }, "No payload schema: any JSON value is accepted.");
  function render() {
    body.replaceChildren(mode === "form" ? wrap : json);
    toggle.textContent = mode === "form" ? "Edit as JSON" : "Back to the form";
    toggle.hidden = !fields;
  }
  render();

  return {
    el: h("div", {}, body, h("div", { class: "form-foot" }, toggle, schemaView)),
    value() {
      if (mode === "form") return collect();
      const text = json.value.trim();
      if (!text) return {};
      try { return JSON.parse(text); } catch (err) { throw new Error(`The payload is not valid JSON: ${err.message}`); }
    },
  };
}

function typeOf(prop) {
  const t = Array.isArray(prop?.type) ? prop.type.find((x) => x !== "null") : prop?.type;
  return t ?? null;
}

function simpleObject(schema) {
  return schema && typeOf(schema) === "object" && schema.properties && typeof schema.properties === "object";
}

function exampleFor(schema) {
  if (schema && typeOf(schema) !== "object") return "";
  return "{}";
}
