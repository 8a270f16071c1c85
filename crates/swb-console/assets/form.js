// Run forms generated from a function's input schema: a field per property,
// labelled with its name (types, enums, defaults, required, nested objects and
// arrays). What a form cannot show is edited as JSON, in that field or for the
// whole input, without loss.

let ids = 0;
// An element with properties and children (absent children are left out).
export const el = (tag, props = {}, ...children) => {
  const node = document.createElement(tag);
  Object.assign(node, props);
  node.append(...children.filter((c) => c !== undefined && c !== null));
  return node;
};

// The type a field edits: one JSON type, or null when a form cannot show it.
function kind(schema) {
  if (!schema || typeof schema !== "object") return null;
  if (schema.$ref || schema.oneOf || schema.anyOf || schema.allOf || schema.not) return null;
  if (Array.isArray(schema.enum)) return "enum";
  if ("const" in schema) return "const";
  let type = schema.type;
  if (Array.isArray(type)) {
    const real = type.filter((t) => t !== "null");
    if (real.length !== 1) return null;
    type = real[0];
  }
  if (type === "object" && schema.properties === undefined) return null;
  if (type === "array" && (Array.isArray(schema.items) || !schema.items)) return null;
  return ["string", "integer", "number", "boolean", "object", "array"].includes(type) ? type : null;
}

function labelled(name, required, schema, control) {
  const id = `f${++ids}`;
  control.id = id;
  const label = el("label", { htmlFor: id, textContent: name });
  const hint = [schema.type && [].concat(schema.type).join(" or "), required ? "required" : "optional"]
    .filter(Boolean)
    .join(", ");
  const box = el("div", { className: "field" }, label, el("span", { className: "hint", textContent: hint }), control);
  if (schema.description) box.append(el("span", { className: "hint", textContent: schema.description }));
  return box;
}

// A field: its element, its value (undefined: left out), and `set`, which says
// whether the value fits the field.
function field(schema, name, required) {
  const k = kind(schema);
  if (k === "object") return objectField(schema, name, required);
  if (k === "array") return arrayField(schema, name, required);
  if (k === "enum") {
    const select = el("select");
    if (!required) select.append(el("option", { value: "", textContent: "(none)" }));
    schema.enum.forEach((v, i) => select.append(el("option", { value: String(i), textContent: JSON.stringify(v) })));
    return {
      element: labelled(name, required, schema, select),
      get: () => (select.value === "" ? undefined : schema.enum[Number(select.value)]),
      set: (v) => {
        if (v === undefined) { select.value = required ? "0" : ""; return true; }
        const i = schema.enum.findIndex((e) => JSON.stringify(e) === JSON.stringify(v));
        if (i < 0) return false;
        select.value = String(i);
        return true;
      },
    };
  }
  if (k === "boolean" && required) {
    const box = el("input", { type: "checkbox" });
    return {
      element: labelled(name, required, schema, box),
      get: () => box.checked,
      set: (v) => {
        if (v === undefined) { box.checked = false; return true; }
        if (typeof v !== "boolean") return false;
        box.checked = v;
        return true;
      },
    };
  }
  if (k === "boolean") {
    const select = el("select", {}, el("option", { value: "", textContent: "(none)" }),
      el("option", { value: "true", textContent: "true" }), el("option", { value: "false", textContent: "false" }));
    return {
      element: labelled(name, required, schema, select),
      get: () => (select.value === "" ? undefined : select.value === "true"),
      set: (v) => {
        if (v !== undefined && typeof v !== "boolean") return false;
        select.value = v === undefined ? "" : String(v);
        return true;
      },
    };
  }
  if (k === "string" || k === "integer" || k === "number") {
    const numeric = k !== "string";
    const input = el("input", { type: numeric ? "number" : "text", required });
    if (numeric) input.step = k === "integer" ? "1" : "any";
    if (schema.minimum !== undefined) input.min = schema.minimum;
    if (schema.maximum !== undefined) input.max = schema.maximum;
    if (schema.maxLength !== undefined) input.maxLength = schema.maxLength;
    return {
      element: labelled(name, required, schema, input),
      get: () => {
        if (input.value === "") return required && !numeric ? "" : undefined;
        return numeric ? Number(input.value) : input.value;
      },
      set: (v) => {
        if (v === undefined) { input.value = ""; return true; }
        if (numeric ? typeof v !== "number" || (k === "integer" && !Number.isInteger(v)) : typeof v !== "string") return false;
        input.value = String(v);
        return true;
      },
    };
  }
  // Anything else (a const, a union, a reference): JSON in a text area.
  const area = el("textarea", { spellcheck: false, rows: 3 });
  area.setAttribute("aria-description", "JSON");
  return {
    element: labelled(name, required, schema, area),
    get: () => (area.value.trim() === "" ? undefined : JSON.parse(area.value)),
    set: (v) => {
      area.value = v === undefined ? "" : JSON.stringify(v);
      return true;
    },
  };
}

function objectField(schema, name, required) {
  const props = schema.properties || {};
  const needed = new Set(schema.required || []);
  const set = el("fieldset", {}, el("legend", { textContent: name }));
  const fields = Object.entries(props).map(([key, sub]) => {
    const f = field(sub, key, needed.has(key));
    set.append(f.element);
    if (sub && sub.default !== undefined) f.set(sub.default);
    return [key, f];
  });
  return {
    element: set,
    get: () => {
      const out = {};
      for (const [key, f] of fields) {
        const v = f.get();
        if (v !== undefined) out[key] = v;
      }
      return Object.keys(out).length === 0 && !required ? undefined : out;
    },
    set: (v) => {
      if (v === undefined) v = {};
      if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
      if (Object.keys(v).some((key) => !(key in props))) return false;
      return fields.every(([key, f]) => f.set(v[key]));
    },
  };
}

function arrayField(schema, name, required) {
  const set = el("fieldset", {}, el("legend", { textContent: name }));
  const list = el("div");
  const items = [];
  const add = (value) => {
    const f = field(schema.items, `${name} item`, true);
    const remove = el("button", { type: "button", textContent: `Remove ${name} item` });
    const row = el("div", { className: "item" }, f.element, remove);
    const entry = { f, row };
    remove.addEventListener("click", () => {
      items.splice(items.indexOf(entry), 1);
      row.remove();
    });
    items.push(entry);
    list.append(row);
    return value === undefined || f.set(value);
  };
  const more = el("button", { type: "button", textContent: `Add ${name} item` });
  more.addEventListener("click", () => add());
  set.append(list, more);
  return {
    element: set,
    get: () => {
      const out = items.map(({ f }) => f.get());
      return out.length === 0 && !required ? undefined : out;
    },
    set: (v) => {
      items.splice(0).forEach(({ row }) => row.remove());
      if (v === undefined) return true;
      if (!Array.isArray(v)) return false;
      return v.every((item) => add(item));
    },
  };
}

// The form for a schema, with a toggle to edit the whole input as JSON. Its
// `value()` is the input to send.
export function runForm(schema) {
  const root = kind(schema) === "object" ? objectField(schema, "input", true) : field(schema || {}, "input", true);
  const raw = el("textarea", { id: `f${++ids}`, spellcheck: false, hidden: true });
  const rawLabel = el("label", { htmlFor: raw.id, textContent: "Input as JSON", hidden: true });
  const toggle = el("input", { type: "checkbox", id: `f${++ids}` });
  const note = el("p", { role: "status" });
  toggle.addEventListener("change", () => {
    if (toggle.checked) {
      raw.value = JSON.stringify(root.get() ?? null, null, 2);
    } else {
      let parsed;
      try {
        parsed = JSON.parse(raw.value);
      } catch (e) {
        note.textContent = `Not JSON: ${e.message}`;
        toggle.checked = true;
        return;
      }
      if (!root.set(parsed === null ? undefined : parsed)) {
        note.textContent = "The form cannot show this input: keep editing it as JSON.";
        toggle.checked = true;
        return;
      }
    }
    note.textContent = "";
    raw.hidden = rawLabel.hidden = !toggle.checked;
    root.element.hidden = toggle.checked;
  });
  const element = el("div", { className: "run-form" }, root.element,
    el("div", { className: "field" }, el("span", {}, toggle, el("label", { htmlFor: toggle.id, textContent: " Edit as JSON" }))),
    rawLabel, raw, note);
  return {
    element,
    value: () => (toggle.checked ? JSON.parse(raw.value) : root.get() ?? null),
  };
}
