/* openbrace playground: POST a patch-mode request, read its SSE stream with
 * fetch + ReadableStream, apply each RFC 6902 `add` op to the document, and fill
 * a form generated from the JSON Schema field by field as the ops land. The
 * request asks for partial strings, so a string types itself in its field while
 * it is written (`event: partial`) and is marked complete when its op lands.
 * Plain browser JavaScript: no build step, no dependencies, no external network. */
"use strict";

(() => {
  // ---------------------------------------------------------------- presets
  // The scenarios of examples/ (the last one calls a tool); small bounded schemas (enums, maxLength,
  // maxItems) so that the embedded 135M model answers sensibly in about a second.
  const PRESETS = [
    {
      id: "early_routing",
      title: "Support ticket: route early",
      hint: "intent and urgency land first: route the ticket while the reply is still being written.",
      prompt:
        "Classify this support ticket and write a short, polite reply.\n\n" +
        "Ticket: I was charged twice for my March invoice and now my card is over its limit. Please refund the duplicate charge today!",
      maxTokens: 320,
      schema: {
        type: "object",
        properties: {
          intent: { type: "string", enum: ["billing", "technical", "account", "cancellation", "other"] },
          urgency: { type: "string", enum: ["low", "medium", "high", "critical"] },
          reply: { type: "string", maxLength: 200 },
        },
        required: ["intent", "urgency", "reply"],
      },
    },
    {
      id: "fanout",
      title: "Plan: fan out the steps",
      hint: "each steps/N starts its own task the moment it arrives, while the next step is still being written.",
      prompt:
        "Plan the migration of a small web app from SQLite to PostgreSQL in three or four short steps, " +
        "such as: 1. Back up the SQLite database.",
      maxTokens: 320,
      schema: {
        type: "object",
        properties: {
          goal: { type: "string", maxLength: 60 },
          steps: {
            type: "array",
            items: { type: "string", maxLength: 50, pattern: '^[1-9]\\. [A-Z][^{}\\[\\]"_=`0-9]+$' },
            minItems: 3,
            maxItems: 4,
          },
        },
        required: ["goal", "steps"],
      },
    },
    {
      id: "approval",
      title: "Approval: act before the reply",
      hint: "the action arrives before the reply: a human can approve a risky action before any reply is sent.",
      prompt:
        "Decide what to do about this request and write the reply to the customer.\n\n" +
        "Customer: I was billed for a year I never used. Refund me the full amount now.",
      maxTokens: 320,
      schema: {
        type: "object",
        properties: {
          action: { type: "string", enum: ["refund", "cancel_subscription", "send_docs", "escalate"] },
          reason: { type: "string", maxLength: 100 },
          reply: { type: "string", maxLength: 160 },
        },
        required: ["action", "reason", "reply"],
      },
    },
    {
      id: "print_fields",
      title: "Movie card: print fields",
      hint: "every field is printed the moment it is complete; nothing is buffered.",
      prompt: "Describe the film The Matrix (1999).",
      maxTokens: 320,
      schema: {
        type: "object",
        properties: {
          title: { type: "string", maxLength: 60 },
          year: { type: "integer", minimum: 1900, maximum: 2030 },
          genre: { type: "string", enum: ["action", "comedy", "drama", "horror", "science fiction", "animation"] },
          rating: { type: "integer", minimum: 1, maximum: 5 },
          summary: { type: "string", maxLength: 200 },
        },
        required: ["title", "year", "genre", "rating", "summary"],
      },
    },
    {
      id: "snapshot",
      title: "Recipe: nested snapshots",
      hint: "objects inside arrays: every op adds one value to the growing document.",
      prompt: "Give a simple recipe for pancakes. Ingredients: flour, milk, eggs and sugar.",
      maxTokens: 320,
      schema: {
        type: "object",
        properties: {
          name: { type: "string", maxLength: 40 },
          servings: { type: "integer", minimum: 1, maximum: 12 },
          vegetarian: { type: "boolean" },
          ingredients: {
            type: "array",
            minItems: 2,
            maxItems: 4,
            items: {
              type: "object",
              properties: {
                item: { type: "string", maxLength: 24, pattern: "^[a-z][a-z ]+$" },
                quantity: { type: "string", pattern: "^[1-9][0-9]{0,2} (g|ml|cups?|tbsp|tsp|pieces?)$" },
              },
              required: ["item", "quantity"],
            },
          },
        },
        required: ["name", "servings", "vegetarian", "ingredients"],
      },
    },
    {
      id: "tool_call",
      title: "Tool call: act on the first argument",
      hint: "the schema is the tool's parameters: the call's name lands first, then each argument fills in; start the lookup the moment order_id lands (examples/tool_call.py).",
      prompt: "My order A-1742 has not arrived and I want it shipped express. Look it up.",
      maxTokens: 120,
      tool: "lookup_order",
      schema: {
        type: "object",
        properties: {
          order_id: { type: "string", pattern: "^[A-Z]-[0-9]{3,5}$" },
          shipping: { type: "string", enum: ["standard", "express"] },
          note: { type: "string", maxLength: 60 },
        },
        required: ["order_id", "shipping", "note"],
      },
    },
  ];

  /** With a tool preset the document is the assistant message; its form follows the
   * call (id, name, then the tool's parameters as the arguments). */
  function messageSchema(parameters) {
    return {
      type: "object",
      properties: {
        tool_calls: {
          type: "array",
          items: {
            type: "object",
            properties: { id: { type: "string" }, name: { type: "string" }, arguments: parameters },
          },
        },
      },
    };
  }

  // --------------------------------------------------- RFC 6901 / RFC 6902 add
  function splitPointer(pointer) {
    if (pointer === "") return [];
    if (pointer[0] !== "/") throw new Error(`JSON Pointer must start with "/": ${pointer}`);
    return pointer.slice(1).split("/").map((t) => t.replace(/~1/g, "/").replace(/~0/g, "~"));
  }

  function escapeToken(key) {
    return String(key).replace(/~/g, "~0").replace(/\//g, "~1");
  }

  function arrayIndex(array, token, allowEnd) {
    if (!/^(0|[1-9][0-9]*)$/.test(token)) throw new Error(`not an array index: ${token}`);
    const index = Number(token);
    if (index > array.length || (index === array.length && !allowEnd)) {
      throw new Error(`array index out of range: ${token}`);
    }
    return index;
  }

  /** Apply one `add` op to `doc` (in place) and return the new document. */
  function applyAdd(doc, path, value) {
    const tokens = splitPointer(path);
    if (tokens.length === 0) return value;
    let target = doc;
    for (const token of tokens.slice(0, -1)) {
      if (Array.isArray(target)) target = target[arrayIndex(target, token, false)];
      else if (target !== null && typeof target === "object" && token in target) target = target[token];
      else throw new Error(`cannot add ${path}: ${token} does not exist`);
    }
    const last = tokens[tokens.length - 1];
    if (Array.isArray(target)) {
      if (last === "-") target.push(value);
      else target.splice(arrayIndex(target, last, true), 0, value);
    } else if (target !== null && typeof target === "object") {
      target[last] = value;
    } else {
      throw new Error(`cannot add ${path}: parent is not a container`);
    }
    return doc;
  }

  // ----------------------------------------------------------------- SSE
  /** An incremental parser for text/event-stream (the WHATWG rules that matter here):
   * lines end at CRLF, LF or CR (never at U+2028), `:` starts a comment, `data:`
   * lines join with "\n", and a blank line dispatches the event. */
  class SSEParser {
    constructor(onEvent) {
      this.onEvent = onEvent;
      this.buffer = "";
      this.reset();
    }

    reset() {
      this.event = "";
      this.data = [];
      this.id = null;
    }

    feed(text, final = false) {
      const buffer = this.buffer + text;
      const eol = /\r\n|\r|\n/g;
      let start = 0;
      let match;
      while ((match = eol.exec(buffer)) !== null) {
        // A CR at the very end may be the first half of a CRLF split across chunks.
        if (match[0] === "\r" && match.index === buffer.length - 1 && !final) break;
        this.line(buffer.slice(start, match.index));
        start = eol.lastIndex;
      }
      this.buffer = buffer.slice(start);
      if (final && this.buffer) {
        this.line(this.buffer);
        this.buffer = "";
      }
    }

    line(line) {
      if (line === "") {
        if (this.data.length) this.onEvent({ event: this.event || "message", data: this.data.join("\n"), id: this.id });
        this.reset();
        return;
      }
      if (line[0] === ":") return; // a comment: keep-alive
      const colon = line.indexOf(":");
      const name = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value[0] === " ") value = value.slice(1);
      if (name === "data") this.data.push(value);
      else if (name === "event") this.event = value;
      else if (name === "id") this.id = value;
    }
  }

  // ------------------------------------------------------------- schemas
  function resolveRef(ref, root) {
    if (!ref.startsWith("#")) return {};
    let node = root;
    for (const token of splitPointer(ref.slice(1))) {
      node = node && typeof node === "object" ? node[token] : undefined;
    }
    return node && typeof node === "object" ? node : {};
  }

  /** The schema to render for `schema`: follows $ref, merges allOf, picks the
   * non-null branch of an Optional. Returns {} for "anything". */
  function resolve(schema, root, depth = 0) {
    if (schema === true || schema === undefined || schema === null) return {};
    if (schema === false || depth > 20) return {};
    let s = schema;
    if (s.$ref) s = { ...resolve(resolveRef(s.$ref, root), root, depth + 1), ...withoutKey(s, "$ref") };
    if (Array.isArray(s.allOf)) {
      s = s.allOf.reduce((acc, part) => ({ ...acc, ...resolve(part, root, depth + 1) }), withoutKey(s, "allOf"));
    }
    const union = s.anyOf || s.oneOf;
    if (Array.isArray(union)) {
      const branches = union.map((b) => resolve(b, root, depth + 1)).filter((b) => b.type !== "null");
      if (branches.length === 1) s = { ...withoutKey(withoutKey(s, "anyOf"), "oneOf"), ...branches[0] };
    }
    if (Array.isArray(s.type)) {
      const types = s.type.filter((t) => t !== "null");
      if (types.length === 1) s = { ...s, type: types[0] };
    }
    return s;
  }

  function withoutKey(object, key) {
    const copy = { ...object };
    delete copy[key];
    return copy;
  }

  function kindOf(schema) {
    if (Array.isArray(schema.enum)) return "enum";
    if ("const" in schema) return "enum";
    if (schema.type === "object" || schema.properties) return "object";
    if (schema.type === "array" || schema.items || schema.prefixItems) return "array";
    if (["string", "integer", "number", "boolean", "null"].includes(schema.type)) return schema.type;
    return "any";
  }

  function kindOfValue(value) {
    if (Array.isArray(value)) return "array";
    if (value === null) return "null";
    if (typeof value === "object") return "object";
    if (typeof value === "boolean") return "boolean";
    if (typeof value === "number") return "number";
    if (typeof value === "string") return "string";
    return "any";
  }

  // ---------------------------------------------------------------- form
  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const child of children) if (child) node.append(child);
    return node;
  };

  /** Build the (empty) form element for `schema` at JSON Pointer `path`. */
  function buildField(schema, path, label, root) {
    const s = resolve(schema, root);
    const kind = kindOf(s);
    const field = el(kind === "object" || kind === "array" ? "fieldset" : "div", {
      class: `fld fld-${kind}`,
      "data-path": path,
      "data-kind": kind,
      "data-state": "pending",
    });
    const head = el("div", { class: "fld-head" },
      el("span", { class: "fld-name", text: label }),
      s.description ? el("span", { class: "fld-desc", text: s.description }) : null,
      el("span", { class: "landed" }));
    field.append(kind === "object" || kind === "array" ? el("legend", {}, head) : head);
    field._schema = s;
    field._root = root;

    if (kind === "object") {
      const children = el("div", { class: "children" });
      for (const [key, sub] of Object.entries(s.properties || {})) {
        children.append(buildField(sub, `${path}/${escapeToken(key)}`, key, root));
      }
      field.append(children);
    } else if (kind === "array") {
      field.append(el("ol", { class: "items", start: "0" }));
    } else if (kind === "enum") {
      const options = Array.isArray(s.enum) ? s.enum : [s.const];
      const chips = el("div", { class: "chips", role: "radiogroup" });
      for (const option of options) {
        const chip = el("span", { class: "chip", role: "radio", "aria-checked": "false", text: display(option) });
        chip.dataset.json = JSON.stringify(option);
        chips.append(chip);
      }
      field.append(chips);
    } else if (kind === "boolean") {
      field.append(el("label", { class: "toggle" },
        el("input", { type: "checkbox", disabled: "" }), el("span", { class: "track" }),
        el("span", { class: "toggle-text", text: "—" })));
    } else if (kind === "string" && !(s.maxLength <= 80) && !s.format && !s.pattern) {
      // Free text of unbounded or long length: a textarea that grows with its value.
      field.append(el("textarea", { class: "value", rows: "3", readonly: "", placeholder: "…" }));
    } else if (kind === "string" || kind === "integer" || kind === "number") {
      const input = el("input", { class: "value", type: "text", readonly: "", placeholder: "…" });
      if (kind !== "string") input.setAttribute("inputmode", "decimal");
      field.append(input);
    } else {
      field.append(el("pre", { class: "value json", text: "…" }));
    }
    return field;
  }

  function display(value) {
    return typeof value === "string" ? value : JSON.stringify(value);
  }

  function grow(textarea) {
    textarea.style.height = "auto";
    textarea.style.height = `${textarea.scrollHeight + 2}px`; // grow to fit the text
  }

  /** The schema of the item at index `index` of an array field. */
  function itemSchema(arraySchema, index) {
    if (Array.isArray(arraySchema.prefixItems) && index < arraySchema.prefixItems.length) {
      return arraySchema.prefixItems[index];
    }
    return arraySchema.items === undefined ? {} : arraySchema.items;
  }

  class FormView {
    constructor(container) {
      this.container = container;
      this.rootSchema = {};
    }

    render(schema) {
      this.rootSchema = schema;
      this.fields = new Map();
      this.container.replaceChildren();
      const root = buildField(schema, "", "document", schema);
      root.classList.add("fld-root");
      this.container.append(root);
      this.index(root);
    }

    index(node) {
      if (node.dataset && node.dataset.path !== undefined) this.fields.set(node.dataset.path, node);
      for (const child of node.querySelectorAll("[data-path]")) this.fields.set(child.dataset.path, child);
    }

    /** The field for `path`, creating it under its parent when the schema did
     * not predict it (array items, additionalProperties, "any" schemas). */
    field(path, value) {
      const existing = this.fields.get(path);
      if (existing) return existing;
      const tokens = splitPointer(path);
      const key = tokens[tokens.length - 1];
      const parentPath = tokens.slice(0, -1).map((t) => `/${escapeToken(t)}`).join("");
      const parent = this.field(parentPath, /^\d+$/.test(key) ? [] : {});
      let schema;
      if (parent.dataset.kind === "array") schema = itemSchema(parent._schema, Number(key));
      else if (parent.dataset.kind === "object") {
        const props = parent._schema.properties || {};
        schema = key in props ? props[key] : parent._schema.additionalProperties;
      }
      let s = resolve(schema, this.rootSchema);
      if (kindOf(s) === "any") s = { type: kindOfValue(value) };
      const field = buildField(s, path, parent.dataset.kind === "array" ? `#${key}` : key, this.rootSchema);
      const holder = parent.querySelector(":scope > .children, :scope > .items");
      if (holder && holder.tagName === "OL") holder.append(el("li", {}, field));
      else if (holder) holder.append(field);
      else parent.append(el("div", { class: "children" }, field));
      this.index(field);
      return field;
    }

    /** Record one op: fill the field, stamp when it landed. */
    apply(op, elapsedMs, sequence) {
      let field = this.field(op.path, op.value);
      const value = op.value;
      const isContainer = value !== null && typeof value === "object";
      if (isContainer && field.dataset.kind === "any") field = this.retype(field, value);
      field.dataset.landedMs = String(Math.round(elapsedMs));
      field.dataset.order = String(sequence);
      const badge = field.querySelector(":scope > .fld-head .landed, :scope > legend .landed");
      if (badge) badge.textContent = `+${Math.round(elapsedMs)} ms`;
      if (isContainer) {
        field.dataset.state = "open";
        // A container sent whole (not opened empty) still fills its children.
        for (const [key, child] of Object.entries(value)) {
          this.apply({ path: `${op.path}/${escapeToken(key)}`, value: child }, elapsedMs, sequence);
        }
        return;
      }
      this.fill(field, value);
      field.dataset.state = "filled";
      field.classList.remove("flash");
      void field.offsetWidth; // restart the highlight animation
      field.classList.add("flash");
    }

    /** A field whose schema allowed anything, rebuilt as the container that arrived. */
    retype(field, value) {
      const name = field.querySelector(".fld-name").textContent;
      const fresh = buildField({ type: kindOfValue(value) }, field.dataset.path, name, this.rootSchema);
      fresh.className = field.className.replace("fld-any", `fld-${kindOfValue(value)}`);
      field.replaceWith(fresh);
      this.index(fresh);
      return fresh;
    }

    /** A piece of a string still being written: append it, mark the field typing. */
    type(path, text) {
      const field = this.field(path, "");
      const input = field.querySelector(":scope > .value");
      if (!input || field.dataset.kind === "enum") return; // an enum shows once it is whole
      if (field.dataset.state !== "typing") {
        field.dataset.state = "typing";
        if (input.tagName === "PRE") input.textContent = "";
        else input.value = "";
      }
      if (input.tagName === "PRE") input.textContent += text;
      else input.value += text;
      if (input.tagName === "TEXTAREA") grow(input);
    }

    fill(field, value) {
      const kind = field.dataset.kind;
      if (kind === "enum") {
        const json = JSON.stringify(value);
        let matched = false;
        for (const chip of field.querySelectorAll(".chip")) {
          const on = chip.dataset.json === json;
          matched = matched || on;
          chip.classList.toggle("on", on);
          chip.setAttribute("aria-checked", String(on));
        }
        if (!matched) {
          // Only an unconstrained upstream can step outside the enum: show it anyway.
          const chip = el("span", { class: "chip on off-schema", role: "radio", "aria-checked": "true", text: display(value) });
          chip.dataset.json = json;
          field.querySelector(".chips").append(chip);
        }
      } else if (kind === "boolean" && typeof value === "boolean") {
        field.querySelector("input").checked = value;
        field.querySelector(".toggle-text").textContent = String(value);
      } else {
        const input = field.querySelector(":scope > .value");
        if (input && input.tagName === "PRE") input.textContent = JSON.stringify(value);
        else if (input) input.value = typeof value === "string" ? value : JSON.stringify(value);
        if (input && input.tagName === "TEXTAREA") grow(input);
      }
    }

    /** Mark whole containers done (their closing brace arrived), and strings still
     * being written as cut off (the stream stopped before their op). */
    finish() {
      for (const field of this.fields.values()) {
        if (field.dataset.state === "open") field.dataset.state = "filled";
        else if (field.dataset.state === "typing") field.dataset.state = "cut";
      }
      for (const field of this.container.querySelectorAll("input.value, textarea.value")) {
        field.readOnly = false;
      }
    }
  }

  // ------------------------------------------------------------ the run
  const state = {
    running: false,
    controller: null,
    started: 0,
    ops: [],
    partials: [], // [path, text, elapsed ms] of each partial record
    document: null,
    done: null,
    error: null,
    firstLeafMs: null,
  };
  window.openbracePlayground = { state, applyAdd, splitPointer, SSEParser, FormView, PRESETS };

  const form = new FormView($("form"));

  function setStatus(name, text) {
    $("status").dataset.state = name;
    $("status-text").textContent = text;
    document.body.dataset.run = name;
  }

  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = !message;
  }

  function headers() {
    const h = { "Content-Type": "application/json", Accept: "text/event-stream" };
    const key = $("api-key").value.trim();
    if (key) h.Authorization = `Bearer ${key}`;
    return h;
  }

  function parseSchema() {
    try {
      const schema = JSON.parse($("schema").value);
      if (schema === null || (typeof schema !== "object" && typeof schema !== "boolean")) {
        throw new Error("a schema is a JSON object");
      }
      $("schema-state").textContent = "valid JSON";
      $("schema-state").dataset.ok = "true";
      return schema;
    } catch (err) {
      $("schema-state").textContent = err.message;
      $("schema-state").dataset.ok = "false";
      return undefined;
    }
  }

  function resetRun() {
    state.streamId = null;
    state.typed = {}; // text so far of the strings being written, by path
    state.replayed = new Set();
    state.ops = [];
    state.partials = [];
    state.document = null;
    state.done = null;
    state.error = null;
    state.firstLeafMs = null;
    $("ops").replaceChildren();
    $("document").textContent = "null";
    showError("");
    for (const id of ["m-first", "m-total", "m-tokens"]) $(id).textContent = "–";
    $("m-ops").textContent = "0";
    $("m-partials").textContent = "0";
  }

  function onOp(op, id) {
    delete state.typed[op.path];
    const elapsed = performance.now() - state.started;
    state.document = applyAdd(state.document, op.path, structuredClone(op.value));
    state.ops.push(op);
    const sequence = state.ops.length - 1;
    form.apply(op, elapsed, sequence);
    const isLeaf = !(op.value !== null && typeof op.value === "object" && Object.keys(op.value).length === 0);
    if (isLeaf && state.firstLeafMs === null) {
      state.firstLeafMs = elapsed;
      $("m-first").textContent = `${Math.round(elapsed)} ms`;
    }
    $("m-ops").textContent = String(state.ops.length);
    const item = el("li", { class: isLeaf ? "leaf" : "open", "data-id": id ?? String(sequence) },
      el("span", { class: "t", text: `+${Math.round(elapsed)}` }),
      el("code", { class: "raw", text: JSON.stringify(op) }));
    const list = $("ops");
    list.append(item);
    list.scrollTop = list.scrollHeight; // follow the stream without scrolling the page
    $("document").textContent = JSON.stringify(state.document, null, 2);
  }

  function onPartial({ path, text }) {
    const sofar = state.typed[path] || "";
    if (state.replayed.delete(path)) {
      // A resume re-sends a string in progress whole: type only what is new.
      if (text.startsWith(sofar)) text = text.slice(sofar.length);
      if (!text) return;
    }
    state.typed[path] = sofar + text;
    const elapsed = performance.now() - state.started;
    state.partials.push([path, text, elapsed]);
    form.type(path, text);
    $("m-partials").textContent = String(state.partials.length);
  }

  function onDone(data) {
    const payload = data && data.done ? data.done : data;
    state.done = payload || {};
    const elapsed = performance.now() - state.started;
    $("m-total").textContent = `${Math.round(elapsed)} ms`;
    const usage = state.done.usage;
    if (usage) $("m-tokens").textContent = String(usage.completion_tokens ?? usage.total_tokens ?? "–");
    form.finish();
  }

  function onStreamError(data) {
    const err = (data && data.error) || data || {};
    state.error = err;
    form.finish();
    showError(`${err.type || "error"}: ${err.message || "the stream ended with an error"}` +
      (state.ops.length ? ` (the ${state.ops.length} ops before it stay valid)` : ""));
  }

  async function run() {
    if (state.running) return;
    const schema = parseSchema();
    if (schema === undefined) {
      showError("The schema is not valid JSON: fix it first.");
      return;
    }
    resetRun();
    const preset = PRESETS.find((p) => p.id === $("preset").value);
    const tool = preset && preset.tool;
    form.render(tool ? messageSchema(schema) : schema);
    const body = {
      messages: [{ role: "user", content: $("prompt").value }],
      stream: "patch",
      // Partial strings type themselves; resumable: a network hiccup resumes the
      // stream where it stopped (docs/resume.md).
      stream_options: { partial_strings: true, resumable: true },
      max_tokens: Number($("max-tokens").value) || 200,
    };
    if (tool) {
      body.tools = [{ type: "function", function: { name: tool, parameters: schema } }];
      body.tool_choice = { type: "function", function: { name: tool } };
    } else {
      body.response_format = { type: "json_schema", json_schema: { name: "playground", schema, strict: true } };
    }
    if ($("model").value) body.model = $("model").value;
    if ($("temperature").value !== "") body.temperature = Number($("temperature").value);

    state.running = true;
    state.controller = new AbortController();
    state.started = performance.now();
    $("run").disabled = true;
    $("stop").disabled = false;
    setStatus("running", "generating…");
    try {
      const response = await fetch("/v1/chat/completions", {
        method: "POST",
        headers: headers(),
        body: JSON.stringify(body),
        signal: state.controller.signal,
      });
      if (!response.ok) {
        let message = `${response.status} ${response.statusText}`;
        try {
          const payload = await response.json();
          if (payload && payload.error) message = `HTTP ${response.status}: ${payload.error.message}`;
        } catch (_) { /* not JSON: keep the status line */ }
        throw new Error(message);
      }
      await readResumable(response);
      if (state.error) setStatus("error", "ended with an error");
      else if (state.done) setStatus("done", "done");
      else {
        state.error = { type: "protocol", message: "the stream ended without a done event" };
        showError("The stream ended without a done event.");
        setStatus("error", "incomplete");
      }
    } catch (err) {
      if (err.name === "AbortError") {
        setStatus("stopped", `stopped after ${state.ops.length} ops`);
        form.finish();
      } else {
        state.error = { type: "client", message: err.message };
        showError(err.message);
        setStatus("error", "failed");
      }
    } finally {
      state.running = false;
      state.controller = null;
      $("run").disabled = false;
      $("stop").disabled = true;
      if (!state.done) $("m-total").textContent = `${Math.round(performance.now() - state.started)} ms`;
    }
  }

  async function readStream(stream) {
    const reader = stream.getReader();
    const decoder = new TextDecoder("utf-8");
    const parser = new SSEParser(({ event, data, id }) => {
      const payload = JSON.parse(data);
      if (event === "patch" || event === "message") onOp(payload, id);
      else if (event === "partial") onPartial(payload);
      else if (event === "done") onDone(payload);
      else if (event === "error") onStreamError(payload);
    });
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      parser.feed(decoder.decode(value, { stream: true }));
    }
    parser.feed(decoder.decode(), true);
  }

  // Read a resumable stream; if the connection breaks before `done` or `error`, ask
  // GET /v1/streams/{id}?after=N for the rest: at most 5 tries in a row, backing off.
  async function readResumable(response) {
    const streamId = response.headers.get("x-stream-id");
    state.streamId = streamId;
    let failures = 0;
    for (;;) {
      const before = state.ops.length;
      if (response) {
        try {
          await readStream(response.body);
        } catch (err) {
          if (err.name === "AbortError" || !streamId) throw err;
        }
      }
      if (state.done || state.error || !streamId) return;
      failures = state.ops.length > before ? 1 : failures + 1;
      if (failures > 5) return; // the caller reports the incomplete stream
      setStatus("running", `connection lost: resuming after op ${state.ops.length - 1}…`);
      await new Promise((resolve) => setTimeout(resolve, Math.min(4000, 250 * 2 ** (failures - 1))));
      state.replayed = new Set(Object.keys(state.typed));
      response = await resumeFrom(streamId);
    }
  }

  // The rest of a resumable stream, or null (worth another try) on a network error or 5xx.
  async function resumeFrom(streamId) {
    const url = `/v1/streams/${encodeURIComponent(streamId)}?after=${state.ops.length - 1}`;
    let response;
    try {
      response = await fetch(url, { headers: headers(), signal: state.controller.signal });
    } catch (err) {
      if (err.name === "AbortError") throw err;
      return null;
    }
    if (response.status === 404) throw new Error("the stream expired before it could be resumed");
    if (!response.ok) return null;
    setStatus("running", "generating…");
    return response;
  }

  function stop() {
    // A resumable stream outlives its connection: ask the server to cancel it, then
    // abort the fetch (which alone stops a stream that is not resumable).
    if (state.streamId) {
      fetch(`/v1/streams/${encodeURIComponent(state.streamId)}`, { method: "DELETE", headers: headers() })
        .catch(() => {});
    }
    if (state.controller) state.controller.abort();
  }

  // ------------------------------------------------------------- wiring
  function choosePreset(id) {
    const preset = PRESETS.find((p) => p.id === id) || PRESETS[0];
    $("preset").value = preset.id;
    $("prompt").value = preset.prompt;
    $("schema").value = JSON.stringify(preset.schema, null, 2);
    $("max-tokens").value = String(preset.maxTokens);
    $("preset-hint").textContent = preset.hint;
    previewSchema();
  }

  function previewSchema() {
    const schema = parseSchema();
    $("run").disabled = schema === undefined || state.running;
    if (schema !== undefined && !state.running) {
      try {
        form.render(schema);
      } catch (err) {
        $("schema-state").textContent = err.message;
      }
    }
  }

  async function loadModels() {
    try {
      const response = await fetch("/v1/models", { headers: headers() });
      if (!response.ok) return;
      const { data } = await response.json();
      const select = $("model");
      select.replaceChildren();
      for (const model of data || []) select.append(el("option", { value: model.id, text: model.id }));
      if (!select.options.length) select.append(el("option", { value: "", text: "(server default)" }));
    } catch (_) { /* the form still works with the server's default model */ }
  }

  for (const preset of PRESETS) $("preset").append(el("option", { value: preset.id, text: preset.title }));
  $("preset").addEventListener("change", (e) => choosePreset(e.target.value));
  $("schema").addEventListener("input", previewSchema);
  $("run").addEventListener("click", run);
  $("stop").addEventListener("click", stop);
  $("api-key").addEventListener("change", loadModels);
  $("copy-doc").addEventListener("click", () => {
    navigator.clipboard?.writeText(JSON.stringify(state.document, null, 2));
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) run();
    if (e.key === "Escape") stop();
  });

  const wanted = new URLSearchParams(location.search).get("preset");
  choosePreset(wanted || PRESETS[0].id);
  setStatus("idle", "ready");
  loadModels();
})();
