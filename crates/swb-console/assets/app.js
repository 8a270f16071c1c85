// The console's pages. Every call goes to /console/api/v1/…, the REST API run with
// this browser's session; data is shown as text (never parsed as HTML).
import { el, runForm } from "/console/assets/form.js";

let csrf = "";
const $ = (id) => document.getElementById(id);
const link = (href, text) => el("a", { href, textContent: text });
const when = (t) => (t ? new Date(t).toLocaleString() : "");
const field = (id, label, control) => {
  control.id = id;
  return el("div", { className: "field" }, el("label", { htmlFor: id, textContent: label }), control);
};
const button = (text, onClick, type = "button") => {
  const b = el("button", { type, textContent: text });
  if (onClick) b.addEventListener("click", onClick);
  return b;
};

// A list page's query (its filters, then one page of 50) and its filter form: each
// field [name, label, control] becomes the query parameter `name` of `#/page`.
function listQuery(params, names) {
  const query = new URLSearchParams({ limit: "50" });
  for (const k of names) if (params.get(k)) query.set(k, params.get(k));
  return query;
}
function filterForm(page, fields) {
  const form = el("form", {}, ...fields.map(([name, label, control]) => field(`filter-${name}`, label, control)),
    button("Filter", null, "submit"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [name, , control] of fields) if (control.value) q.set(name, control.value);
    location.hash = `#/${page}?${q}`;
  });
  return form;
}

// A REST call through the session: the answer's JSON, or an Error whose `api`
// is the error body ({code, message, details}).
async function api(path, { method = "GET", body, raw = false } = {}) {
  const headers = { "x-csrf-token": csrf };
  if (body !== undefined && !raw) headers["content-type"] = "application/json";
  const response = await fetch(`/console/api/v1${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : raw ? body : JSON.stringify(body),
    credentials: "same-origin",
  });
  if (response.status === 401) {
    location.reload();
  }
  const text = await response.text();
  if (!response.ok) {
    let error = { code: String(response.status), message: text };
    try {
      error = JSON.parse(text).error;
    } catch {}
    const e = new Error(`${error.code}: ${error.message}`);
    e.api = error;
    throw e;
  }
  return { response, text, json: () => (text ? JSON.parse(text) : null) };
}

function failure(e) {
  const box = el("div", { className: "error", role: "alert" }, e.api ? `${e.api.code}: ${e.api.message}` : String(e));
  const details = e.api && e.api.details;
  if (details && Object.keys(details).length) {
    if (details.stderr_tail) box.append(el("h3", { textContent: "stderr" }), el("pre", { textContent: details.stderr_tail }));
    box.append(el("pre", { textContent: JSON.stringify(details, null, 2) }));
  }
  return box;
}

function table(headers, rows) {
  return el("table", {},
    el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { scope: "col", textContent: h })))),
    el("tbody", {}, ...rows.map((cells) => el("tr", {}, ...cells.map((c) => el("td", {}, c instanceof Node ? c : String(c ?? "")))))));
}

function show(title, ...content) {
  const view = $("view");
  view.replaceChildren(el("h1", { textContent: title }), ...content);
  document.title = `${title} · Switchboard`;
}

async function catalog() {
  const list = (await api("/functions")).json().functions;
  const search = el("input", { type: "search", id: "search" });
  const body = el("div");
  const render = () => {
    const q = search.value.trim().toLowerCase();
    const rows = list
      .filter((f) => !q || `${f.function} ${f.description || ""}`.toLowerCase().includes(q))
      .map((f) => [link(`#/fn/${f.function}`, f.function), f.kind, f.description || "", f.active_version]);
    body.replaceChildren(rows.length ? table(["Function", "Kind", "Description", "Version"], rows) : el("p", { textContent: "No function matches." }));
  };
  search.addEventListener("input", render);
  render();
  show("Catalog", field("search", "Search", search), body);
}

async function fn(name) {
  const detail = (await api(`/functions/${name}`)).json();
  const active = detail.active;
  const result = el("div", { id: "result", role: "status" });
  const form = runForm(active.interface.input || {});
  const run = async (job) => {
    result.replaceChildren("Running…");
    try {
      const input = form.value();
      if (job) {
        const accepted = (await api("/jobs", { method: "POST", body: { function: name, input } })).json();
        result.replaceChildren(el("p", { className: "ok" }, "job ", link(`#/job/${accepted.id}`, accepted.id), ` is ${accepted.status}`));
        return;
      }
      const answer = await api(`/functions/${name}/invoke`, { method: "POST", body: JSON.stringify(input), raw: true });
      const id = answer.response.headers.get("swb-invocation-id");
      result.replaceChildren(el("p", { className: "ok" }, "invocation ", link(`#/inv/${id}`, id)), el("pre", { id: "output", textContent: answer.text }));
    } catch (e) {
      result.replaceChildren(failure(e));
    }
  };
  const runButton = el("button", { type: "submit", textContent: "Run" });
  const jobButton = el("button", { type: "button", textContent: "Run as a job" });
  jobButton.addEventListener("click", () => run(true));
  // The server checks the input against the schema; the form's own checks would
  // also block fields hidden while the input is edited as JSON.
  const formEl = el("form", { id: "run", noValidate: true }, form.element, runButton, " ", jobButton);
  formEl.addEventListener("submit", (e) => {
    e.preventDefault();
    run(false);
  });
  const rows = detail.versions.map((v) => {
    const current = v.version === detail.active_version;
    let action = "active";
    if (!current) {
      action = el("button", { type: "button", textContent: `Roll back to version ${v.version}` });
      action.addEventListener("click", async () => {
        try {
          await api(`/functions/${name}/rollback`, { method: "POST", body: { version: v.version } });
          route();
        } catch (e) {
          result.replaceChildren(failure(e));
        }
      });
    }
    return [v.version, when(v.created_at), v.artefact || "remote", action];
  });
  const workers = detail.workers.map((w) => [w.name, w.status, w.error || ""]);
  // What only those who may deploy it read: a section that cannot load says why.
  const recent = await section("Recent calls", async () => {
    const calls = (await api(`/invocations?function=${encodeURIComponent(name)}&limit=10`)).json().invocations;
    const rows = calls.map((r) => [link(`#/inv/${r.id}`, r.id), r.outcome, `${(r.duration_us / 1000).toFixed(1)} ms`, when(r.started_at), r.caller || ""]);
    return [rows.length ? table(["Invocation", "Outcome", "Duration", "Started", "Caller"], rows) : el("p", { textContent: "No calls yet." })];
  });
  const profiles = await section("Profiles", async () => {
    const list = (await api(`/functions/${name}/profiles`)).json().profiles;
    return [list.length ? table(["Profile", "Settings", "Updated"], list.map((p) => [p.name, JSON.stringify(p.value), when(p.updated_at)])) : el("p", { textContent: "No profiles." })];
  });
  const shares = await section("Shared with", async () => {
    const list = (await api(`/functions/${name}/shares`)).json().shares;
    return [list.length ? table(["E-mail", "Role", ""], list.map((s) => [s.email, s.role, s.pending ? "pending" : ""])) : el("p", { textContent: "Not shared." })];
  });
  show(name,
    el("p", { id: "description", textContent: active.interface.description || "(no description)" }),
    el("p", {}, `${detail.kind} function, version ${detail.active_version}`),
    el("h2", { textContent: "Run" }), formEl, result,
    el("h2", { textContent: "Versions" }), table(["Version", "Created", "Code", ""], rows),
    el("h2", { textContent: "Workers that can run it" }), workers.length ? table(["Worker", "Code", "Problem"], workers) : el("p", { textContent: "None connected." }),
    el("h2", { textContent: "Interface" }), el("pre", { textContent: JSON.stringify(active.interface, null, 2) }),
    recent, el("p", {}, link(`#/invocations?function=${encodeURIComponent(name)}`, "All calls")), profiles, shares);
}

async function invocations(params) {
  const query = listQuery(params, ["function", "outcome"]);
  const list = (await api(`/invocations?${query}`)).json().invocations;
  const rows = list.map((r) => [link(`#/inv/${r.id}`, r.id), r.function, r.outcome, (r.duration_us / 1000).toFixed(1) + " ms", when(r.started_at)]);
  const filter = filterForm("invocations", [
    ["function", "Function", el("input", { value: params.get("function") || "" })],
    ["outcome", "Outcome (ok or an error code)", el("input", { value: params.get("outcome") || "" })],
  ]);
  show("Invocations", filter, rows.length ? table(["Invocation", "Function", "Outcome", "Duration", "Started"], rows) : el("p", { textContent: "No invocations." }));
}

async function invocation(id) {
  const r = (await api(`/invocations/${id}`)).json();
  const facts = [["Function", link(`#/fn/${r.function}`, r.function)], ["Version", r.version], ["Worker", r.worker || "-"],
    ["Started", when(r.started_at)], ["Duration", `${(r.duration_us / 1000).toFixed(3)} ms`], ["Outcome", r.outcome], ["Caller", r.caller || ""]];
  const parts = [table(["", ""], facts)];
  if (r.error) parts.push(el("h2", { textContent: "Error" }), failure({ api: r.error }));
  if (r.io) parts.push(el("h2", { textContent: "Input" }), el("pre", { textContent: r.io.input }), el("h2", { textContent: "Output" }), el("pre", { textContent: r.io.output }));
  if (r.stderr_tail) parts.push(el("h2", { textContent: "stderr" }), el("pre", { textContent: r.stderr_tail }));
  // Its call tree, when it made nested calls or is one: indented by depth.
  const tree = (await api(`/invocations/${id}/tree`)).json().invocations;
  if (tree.length > 1) {
    const items = tree.map((t) => el("li", {}, "\u00a0".repeat(4 * (t.tree ? t.tree.depth : 0)),
      t.id === id ? el("strong", { textContent: `${t.function} (this call)` }) : link(`#/inv/${t.id}`, t.function),
      ` ${t.outcome}, ${(t.duration_us / 1000).toFixed(1)} ms`));
    parts.push(el("h2", { textContent: "Call tree" }), el("ul", { className: "tree" }, ...items));
  }
  show(`Invocation ${id}`, ...parts);
}

// The live stream of the page shown (one per page), closed when it is left.
let stream = null;
function live(path, render) {
  stream = new EventSource(`/console/watch?path=${encodeURIComponent(path)}`);
  stream.onmessage = (e) => {
    const data = JSON.parse(e.data);
    if (data && data.error) render(null, data.error);
    else render(data);
  };
}

async function jobs(params) {
  const query = listQuery(params, ["function", "status"]);
  const status = el("select", {},
    ...["", "queued", "running", "succeeded", "failed", "cancelled"].map((s) => el("option", { value: s, textContent: s || "(any)", selected: s === (params.get("status") || "") })));
  const filter = filterForm("jobs", [
    ["function", "Function", el("input", { value: params.get("function") || "" })],
    ["status", "Status", status],
  ]);
  const body = el("div", { id: "jobs", ariaLive: "polite" });
  show("Jobs", filter, body);
  live(`/v1/jobs?${query}`, (list, error) => {
    if (error) return body.replaceChildren(failure({ api: error }));
    const rows = list.jobs.map((j) => [link(`#/job/${j.id}`, j.id), j.function, j.status, `${j.attempts} of ${j.max_attempts}`, when(j.created_at)]);
    body.replaceChildren(rows.length ? table(["Job", "Function", "Status", "Attempts", "Created"], rows) : el("p", { textContent: "No jobs." }));
  });
}

async function job(id) {
  const body = el("div", { id: "job", ariaLive: "polite" });
  const result = el("div", { role: "status" });
  const cancel = el("button", { type: "button", textContent: "Cancel" });
  cancel.addEventListener("click", async () => {
    try {
      await api(`/jobs/${id}/cancel`, { method: "POST" });
    } catch (e) {
      result.replaceChildren(failure(e));
    }
  });
  const again = el("button", { type: "button", textContent: "Submit again" });
  again.addEventListener("click", async () => {
    try {
      const accepted = (await api(`/jobs/${id}/resubmit`, { method: "POST" })).json();
      result.replaceChildren(el("p", { className: "ok" }, "submitted again: ", link(`#/job/${accepted.id}`, accepted.id)));
    } catch (e) {
      result.replaceChildren(failure(e));
    }
  });
  show(`Job ${id}`, body, el("p", {}, cancel, " ", again), result);
  live(`/v1/jobs/${id}`, (j, error) => {
    if (error) return body.replaceChildren(failure({ api: error }));
    cancel.disabled = ["succeeded", "failed", "cancelled"].includes(j.status);
    const facts = [["Function", link(`#/fn/${j.function}`, j.function)], ["Status", j.status], ["Attempts", `${j.attempts} of ${j.max_attempts}`],
      ["Waiting", j.waiting || ""], ["Created", when(j.created_at)], ["Started", when(j.started_at)], ["Finished", when(j.finished_at)]];
    const parts = [table(["", ""], facts)];
    if (j.result !== undefined) parts.push(el("h2", { textContent: "Result" }), el("pre", { id: "job-result", textContent: JSON.stringify(j.result, null, 2) }));
    if (j.error) parts.push(el("h2", { textContent: "Error" }), failure({ api: j.error }));
    if (j.attempt_errors && j.attempt_errors.length) {
      parts.push(el("h2", { textContent: "Attempts that failed" }), table(["Code", "Message"], j.attempt_errors.map((e) => [e.code, e.message])));
    }
    if (j.stderr_tail) parts.push(el("h2", { textContent: "stderr" }), el("pre", { textContent: j.stderr_tail }));
    body.replaceChildren(...parts);
  });
}

async function workers() {
  const body = el("div", { id: "workers", ariaLive: "polite" });
  show("Workers", body);
  live("/v1/workers", (list, error) => {
    if (error) return body.replaceChildren(failure({ api: error }));
    const rows = list.workers.map((w) => [w.name, `${w.in_flight} of ${w.capacity}`,
      Object.entries(w.labels).map(([k, v]) => `${k}=${v}`).join(", "),
      [...w.runtimes, ...w.functions].join(", "),
      `${w.code_cache.memory_hits} memory, ${w.code_cache.disk_hits} disk, ${w.code_cache.compiles} compiled`,
      w.draining ? "draining" : "serving", when(w.last_heartbeat_at)]);
    body.replaceChildren(rows.length ? table(["Worker", "Load", "Labels", "Runs", "Code cache", "State", "Last heard"], rows) : el("p", { textContent: "No worker is connected." }));
  });
}

// A section that loads on its own: a failure (a scoped token reading tokens, a
// non-administrator reading users) shows there, and the page goes on.
async function section(title, load) {
  const box = el("section", { ariaLabel: title }, el("h2", { textContent: title }));
  try {
    box.append(...(await load()));
  } catch (e) {
    box.append(failure(e));
  }
  return box;
}

const shownOnce = (what, secret) =>
  el("div", { className: "ok", role: "status" }, `${what} (shown once; copy it now):`, el("pre", { className: "secret", textContent: secret }));

async function people() {
  const note = el("div", { role: "status" });
  const attempt = (action) => async (e) => {
    e?.preventDefault?.();
    try {
      await action();
    } catch (err) {
      note.replaceChildren(failure(err));
    }
  };
  const me = (await api("/me")).json();
  const mine = await section("You", async () => [table(["", ""], [["E-mail", me.user.email], ["Namespace", me.user.namespace], ["Token", me.token_id], ["Scopes", me.scopes.join(" ")]])]);
  const tokens = await section("Tokens", async () => {
    const list = (await api("/tokens")).json().tokens;
    const rows = list.map((t) => [t.id, t.scopes.join(" "), t.description, when(t.expires_at), t.revoked_at ? `revoked ${when(t.revoked_at)}` :
      button(`Revoke ${t.id}`, attempt(async () => { await api(`/tokens/${t.id}`, { method: "DELETE" }); route(); }))]);
    const scopes = el("input", { value: "*", required: true });
    const days = el("input", { type: "number", min: 1, value: "30" });
    const description = el("input", {});
    const form = el("form", {}, field("token-scopes", "Scopes (space-separated, e.g. call:alice/echo)", scopes),
      field("token-days", "Expires in days", days), field("token-description", "Description", description), button("Create token", null, "submit"));
    form.addEventListener("submit", attempt(async () => {
      const body = { scopes: scopes.value.trim().split(/\s+/), description: description.value };
      if (days.value) body.expires_in_s = Number(days.value) * 86400;
      const made = (await api("/tokens", { method: "POST", body })).json();
      note.replaceChildren(shownOnce(`token ${made.id}`, made.token));
    }));
    return [rows.length ? table(["Token", "Scopes", "Description", "Expires", ""], rows) : el("p", { textContent: "No tokens." }), form];
  });
  const namespaces = await section("Namespaces and shares", async () => {
    const list = (await api("/namespaces")).json();
    const parts = [];
    for (const ns of list) {
      let shares = [];
      try {
        shares = (await api(`/namespaces/${ns.name}/shares`)).json().shares;
      } catch {}
      const rows = shares.map((s) => [s.email, s.role, s.pending ? "pending" : "",
        button(`Unshare ${ns.name} with ${s.email}`, attempt(async () => { await api(`/namespaces/${ns.name}/shares/${encodeURIComponent(s.email)}`, { method: "DELETE" }); route(); }))]);
      const email = el("input", { type: "email", required: true });
      const role = el("select", {}, ...["call", "deploy", "serve", "owner"].map((r) => el("option", { value: r, textContent: r })));
      const form = el("form", {}, field(`share-${ns.name}-email`, `Share ${ns.name} with (e-mail)`, email), field(`share-${ns.name}-role`, "Role", role), button(`Share ${ns.name}`, null, "submit"));
      form.addEventListener("submit", attempt(async () => {
        await api(`/namespaces/${ns.name}/shares`, { method: "POST", body: { email: email.value, role: role.value } });
        route();
      }));
      parts.push(el("h3", { textContent: `${ns.name} (owner ${ns.owner})` }), rows.length ? table(["Shared with", "Role", "", ""], rows) : el("p", { textContent: "Not shared." }), form);
    }
    const name = el("input", { required: true });
    const create = el("form", {}, field("namespace-name", "New namespace", name), button("Create namespace", null, "submit"));
    create.addEventListener("submit", attempt(async () => {
      await api("/namespaces", { method: "POST", body: { name: name.value } });
      route();
    }));
    return [...parts, create];
  });
  const users = me.user.is_admin ? await section("Users", async () => {
    const list = (await api("/users")).json().users;
    const rows = list.map((u) => [u.email, u.namespace, u.is_admin ? "administrator" : "", when(u.created_at),
      u.email === me.user.email ? "" : button(`Delete ${u.email}`, attempt(async () => { await api(`/users/${encodeURIComponent(u.email)}`, { method: "DELETE" }); route(); }))]);
    const email = el("input", { type: "email", required: true });
    const form = el("form", {}, field("user-email", "New user (e-mail)", email), button("Add user", null, "submit"));
    form.addEventListener("submit", attempt(async () => {
      const made = (await api("/users", { method: "POST", body: { email: email.value } })).json();
      note.replaceChildren(shownOnce(`${made.email}'s first token`, made.token));
    }));
    return [table(["User", "Namespace", "", "Since", ""], rows), form];
  }) : null;
  const audit = await section("Audit log", async () => {
    const events = (await api("/audit?limit=50")).json().events;
    return [table(["When", "Who", "Did", "What"], events.map((e) => [when(e.at), e.actor, e.action, e.target]))];
  });
  show("People", note, mine, tokens, namespaces, users, audit);
}

async function data() {
  const note = el("div", { role: "status" });
  const list = (await api("/blobs")).json().blobs;
  const rows = list.map((b) => [b.name || "", b.digest, b.size.toLocaleString() + " bytes", b.sealed ? "sealed: functions only" :
    el("a", { href: `/console/api/v1/blobs/${b.digest}`, download: b.name || b.digest, textContent: "Download" }),
    button(`Delete ${b.name || b.digest}`, async () => {
      try { await api(`/blobs/${b.digest}`, { method: "DELETE" }); route(); } catch (e) { note.replaceChildren(failure(e)); }
    })]);
  const file = el("input", { type: "file", required: true });
  const sealed = el("input", { type: "checkbox" });
  const progress = el("progress", { max: 100, value: 0, hidden: true });
  const form = el("form", {}, field("blob-file", "File", file),
    el("div", { className: "field" }, el("span", {}, sealed, el("label", { htmlFor: "blob-sealed", textContent: " Sealed (a dataset: functions read it, nobody downloads it)" }))),
    progress, button("Upload", null, "submit"));
  sealed.id = "blob-sealed";
  progress.setAttribute("aria-label", "Upload progress");
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const chosen = file.files[0];
    if (!chosen) return;
    // XMLHttpRequest reports upload progress; fetch does not.
    const xhr = new XMLHttpRequest();
    const query = new URLSearchParams({ sealed: String(sealed.checked), name: chosen.name });
    xhr.open("POST", `/console/api/v1/blobs?${query}`);
    xhr.setRequestHeader("x-csrf-token", csrf);
    xhr.setRequestHeader("content-type", "application/octet-stream");
    progress.hidden = false;
    xhr.upload.onprogress = (p) => { if (p.lengthComputable) progress.value = (100 * p.loaded) / p.total; };
    xhr.onload = () => {
      if (xhr.status === 201) route();
      else {
        let error = { code: String(xhr.status), message: xhr.responseText };
        try { error = JSON.parse(xhr.responseText).error; } catch {}
        note.replaceChildren(failure({ api: error }));
      }
    };
    xhr.send(chosen);
  });
  show("Data", note, rows.length ? table(["Name", "Digest", "Size", "", ""], rows) : el("p", { textContent: "No blobs yet." }),
    el("h2", { textContent: "Upload" }), form);
}

// A chart of a function's last hour: calls per second per minute as bars, the
// share of errors as a line; the same numbers are in the table beside it.
function chart(minutes) {
  const svg = (tag, attrs = {}) => {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    return node;
  };
  const width = 600, height = 120, now = Math.floor(Date.now() / 60000);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height + 20}`, role: "img", class: "chart" });
  const rate = (m) => (m.ok + m.errors) / 60;
  const top = Math.max(...minutes.map(rate), 0.001);
  const x = (m) => ((59 - (now - Math.floor(Date.parse(m.at) / 60000))) * width) / 60;
  for (const m of minutes) {
    const h = (rate(m) / top) * height;
    root.append(svg("rect", { x: x(m), y: height - h, width: width / 60 - 1, height: h, class: "calls" }));
  }
  const points = minutes.map((m) => `${x(m) + width / 120},${height - (m.errors / (m.ok + m.errors)) * height}`).join(" ");
  if (minutes.length) root.append(svg("polyline", { points, class: "errors" }));
  const label = svg("text", { x: 0, y: height + 16, class: "axis" });
  label.textContent = `an hour ago … now; bars: calls/s (peak ${top.toFixed(2)}), line: share of errors`;
  root.append(label);
  const title = svg("title");
  title.textContent = `Calls per second and error rate per minute, peak ${top.toFixed(2)} calls/s`;
  root.prepend(title);
  return root;
}

async function overview() {
  const stats = (await api("/stats")).json().functions;
  const parts = stats.map((f) => {
    const total = f.minutes.reduce((n, m) => n + m.ok + m.errors, 0);
    const errors = f.minutes.reduce((n, m) => n + m.errors, 0);
    const rows = f.minutes.slice(-5).reverse().map((m) => [when(m.at), (m.ok + m.errors) / 60 < 0.01 ? m.ok + m.errors + " calls" : ((m.ok + m.errors) / 60).toFixed(2) + " calls/s", m.errors]);
    return el("section", { className: "function-stats", ariaLabel: f.function },
      el("h2", {}, link(`#/fn/${f.function}`, f.function)),
      el("p", { textContent: `${total} calls in the last hour, ${errors} failed (${((100 * errors) / total).toFixed(1)} %)` }),
      chart(f.minutes),
      table(["Minute", "Calls", "Errors"], rows));
  });
  show("Overview", el("p", { textContent: "Calls per function over the last hour, on this server." }),
    ...(parts.length ? parts : [el("p", { textContent: "No calls in the last hour." })]));
}

async function route() {
  if (stream) {
    stream.close();
    stream = null;
  }
  const [path, query] = location.hash.slice(1).split("?");
  const params = new URLSearchParams(query || "");
  try {
    if (path.startsWith("/fn/")) await fn(path.slice(4));
    else if (path === "/invocations") await invocations(params);
    else if (path.startsWith("/inv/")) await invocation(path.slice(5));
    else if (path === "/jobs") await jobs(params);
    else if (path.startsWith("/job/")) await job(path.slice(5));
    else if (path === "/workers") await workers();
    else if (path === "/people") await people();
    else if (path === "/data") await data();
    else if (path === "/overview") await overview();
    else await catalog();
  } catch (e) {
    show("Something went wrong", failure(e));
  }
  $("main").focus();
}

async function start() {
  const me = await (await fetch("/console/session", { credentials: "same-origin" })).json();
  if (!me.signed_in) {
    $("sign-in").hidden = false;
    $("sign-in-error").hidden = !location.search.includes("signin=refused");
    $("token").focus();
    return;
  }
  csrf = me.csrf;
  $("who").textContent = me.email;
  $("nav").hidden = false;
  const out = $("sign-out");
  out.hidden = false;
  out.addEventListener("click", async () => {
    await fetch("/console/session", { method: "DELETE", headers: { "x-csrf-token": csrf }, credentials: "same-origin" });
    location.assign("/console/");
  });
  window.addEventListener("hashchange", route);
  await route();
}

start();
