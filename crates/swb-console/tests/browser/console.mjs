// The console in a real browser (Debian's chromium, driven by playwright-core),
// against a real `swb up`: crates/swb/tests/console.rs starts the server and runs
// this with SWB_URL, ADMIN_TOKEN, BOB_TOKEN, ECHO_WASM and CHROMIUM set. Each
// scenario prints `ok - <name>`; the first failure exits non-zero. With
// SCREENSHOTS set, the pages are photographed into that folder (docs/console).
import { chromium } from "playwright-core";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import assert from "node:assert/strict";

const url = process.env.SWB_URL;
const admin = process.env.ADMIN_TOKEN;
const bobToken = process.env.BOB_TOKEN;
const shots = process.env.SCREENSHOTS;

// ---- the REST API, to set the scene ----------------------------------------------
async function rest(path, { method = "GET", body, token = admin, raw } = {}) {
  const headers = { authorization: `Bearer ${token}` };
  if (body !== undefined && !raw) headers["content-type"] = "application/json";
  const answer = await fetch(`${url}${path}`, { method, headers, body: raw ?? (body === undefined ? undefined : JSON.stringify(body)) });
  const text = await answer.text();
  if (!answer.ok) throw new Error(`${method} ${path}: ${answer.status} ${text}`);
  return text ? JSON.parse(text) : null;
}
async function upload(path) {
  const module = readFileSync(path);
  const digest = `sha256:${createHash("sha256").update(module).digest("hex")}`;
  await rest(`/v1/artefacts/${digest}`, { method: "PUT", raw: module });
  return digest;
}
const echo = await upload(process.env.ECHO_WASM);
const deploy = (name, input, description, artefact = echo) =>
  rest(`/v1/functions/admin/${name}/versions`, { method: "POST", body: { artefact, interface: { input, description }, limits: { timeout_ms: 60000 } } });

// The shapes of input a run form must handle: what to type, and the JSON that
// the echo function must then answer.
const obj = (properties, required = []) => ({ type: "object", properties, required });
const shapes = [
  ["a string", obj({ name: { type: "string" } }, ["name"]), (p) => p.getByLabel("name", { exact: true }).fill("Ada"), { name: "Ada" }],
  ["an integer", obj({ count: { type: "integer" } }, ["count"]), (p) => p.getByLabel("count", { exact: true }).fill("7"), { count: 7 }],
  ["a number", obj({ ratio: { type: "number" } }, ["ratio"]), (p) => p.getByLabel("ratio", { exact: true }).fill("2.5"), { ratio: 2.5 }],
  ["a required boolean", obj({ loud: { type: "boolean" } }, ["loud"]), (p) => p.getByLabel("loud", { exact: true }).check(), { loud: true }],
  ["an optional boolean", obj({ flag: { type: "boolean" } }), (p) => p.getByLabel("flag", { exact: true }).selectOption("false"), { flag: false }],
  ["a string enum", obj({ mode: { enum: ["fast", "slow"] } }, ["mode"]), (p) => p.getByLabel("mode", { exact: true }).selectOption({ label: '"slow"' }), { mode: "slow" }],
  ["a number enum", obj({ level: { enum: [1, 2, 3] } }, ["level"]), (p) => p.getByLabel("level", { exact: true }).selectOption({ label: "2" }), { level: 2 }],
  ["an optional field left out", obj({ first: { type: "string" }, second: { type: "string" } }, ["first"]), (p) => p.getByLabel("first", { exact: true }).fill("x"), { first: "x" }],
  ["a default", obj({ greeting: { type: "string", default: "hi" } }), async () => {}, { greeting: "hi" }],
  ["a nested object", obj({ origin: obj({ x: { type: "number" }, y: { type: "number" } }, ["x", "y"]) }, ["origin"]),
    async (p) => { await p.getByLabel("x", { exact: true }).fill("1"); await p.getByLabel("y", { exact: true }).fill("-2"); }, { origin: { x: 1, y: -2 } }],
  ["an array of strings", obj({ tags: { type: "array", items: { type: "string" } } }),
    async (p) => {
      await p.getByRole("button", { name: "Add tags item" }).click();
      await p.getByRole("button", { name: "Add tags item" }).click();
      const items = p.getByLabel("tags item", { exact: true });
      await items.nth(0).fill("a");
      await items.nth(1).fill("b");
    }, { tags: ["a", "b"] }],
  ["an array of objects", obj({ points: { type: "array", items: obj({ px: { type: "integer" } }, ["px"]) } }, ["points"]),
    async (p) => { await p.getByRole("button", { name: "Add points item" }).click(); await p.getByLabel("px", { exact: true }).fill("3"); }, { points: [{ px: 3 }] }],
  ["a union, as JSON", obj({ value: { oneOf: [{ type: "string" }, { type: "integer" }] } }, ["value"]),
    (p) => p.getByLabel("value", { exact: true }).fill("5"), { value: 5 }],
  ["a nullable string", obj({ note: { type: ["string", "null"] } }), (p) => p.getByLabel("note", { exact: true }).fill("z"), { note: "z" }],
  ["a bare string input", { type: "string" }, (p) => p.getByLabel("input", { exact: true }).fill("hello"), "hello"],
  ["what the form cannot show, as JSON", obj({ name: { type: "string" } }),
    async (p) => {
      await p.getByLabel("Edit as JSON").check();
      await p.getByLabel("Input as JSON").fill('{"name":"Ada","extra":[1,{"deep":true}]}');
      // Back to the form: it cannot show `extra`, so the JSON stays, unchanged.
      await p.getByLabel("Edit as JSON").click();
      await p.getByText("The form cannot show this input").waitFor();
      assert.ok(await p.getByLabel("Edit as JSON").isChecked());
    }, { name: "Ada", extra: [1, { deep: true }] }],
  ["the form to JSON and back", obj({ city: { type: "string" }, n: { type: "integer" } }, ["city"]),
    async (p) => {
      await p.getByLabel("city", { exact: true }).fill("Oslo");
      await p.getByLabel("n", { exact: true }).fill("4");
      await p.getByLabel("Edit as JSON").check();
      assert.deepEqual(JSON.parse(await p.getByLabel("Input as JSON").inputValue()), { city: "Oslo", n: 4 });
      await p.getByLabel("Input as JSON").fill('{"city":"Bergen","n":5}');
      await p.getByLabel("Edit as JSON").uncheck();
      assert.equal(await p.getByLabel("city", { exact: true }).inputValue(), "Bergen");
    }, { city: "Bergen", n: 5 }],
  ["a bounded integer", obj({ age: { type: "integer", minimum: 0, maximum: 150 } }, ["age"]), (p) => p.getByLabel("age", { exact: true }).fill("42"), { age: 42 }],
  ["a string with a length limit", obj({ code: { type: "string", maxLength: 5 } }, ["code"]), (p) => p.getByLabel("code", { exact: true }).fill("abc"), { code: "abc" }],
  ["an enum with a default", obj({ size: { enum: ["s", "m", "l"], default: "m" } }), async () => {}, { size: "m" }],
  ["a boolean defaulting to true", obj({ on: { type: "boolean", default: true } }, ["on"]), async () => {}, { on: true }],
  ["objects two deep", obj({ a: obj({ b: obj({ c: { type: "string" } }) }) }), (p) => p.getByLabel("c", { exact: true }).fill("deep"), { a: { b: { c: "deep" } } }],
  ["an array of integers", obj({ ns: { type: "array", items: { type: "integer" } } }, ["ns"]),
    async (p) => {
      for (const v of ["1", "2", "3"]) {
        await p.getByRole("button", { name: "Add ns item" }).click();
        await p.getByLabel("ns item", { exact: true }).last().fill(v);
      }
    }, { ns: [1, 2, 3] }],
  ["an array item removed", obj({ ws: { type: "array", items: { type: "string" } } }, ["ws"]),
    async (p) => {
      await p.getByRole("button", { name: "Add ws item" }).click();
      await p.getByRole("button", { name: "Add ws item" }).click();
      await p.getByLabel("ws item", { exact: true }).nth(0).fill("gone");
      await p.getByLabel("ws item", { exact: true }).nth(1).fill("kept");
      await p.getByRole("button", { name: "Remove ws item" }).first().click();
    }, { ws: ["kept"] }],
  ["a constant, as JSON", obj({ kind: { const: "v1" } }, ["kind"]), (p) => p.getByLabel("kind", { exact: true }).fill('"v1"'), { kind: "v1" }],
  ["a reference, as JSON", { ...obj({ p: { $ref: "#/$defs/P" } }, ["p"]), $defs: { P: obj({ q: { type: "integer" } }) } },
    (p) => p.getByLabel("p", { exact: true }).fill('{"q":1}'), { p: { q: 1 } }],
  ["a null through a union", obj({ maybe: { anyOf: [{ type: "string" }, { type: "null" }] } }, ["maybe"]),
    (p) => p.getByLabel("maybe", { exact: true }).fill("null"), { maybe: null }],
  ["a described field", obj({ city: { type: "string", description: "Where it happens" } }, ["city"]),
    async (p) => { await p.getByText("Where it happens", { exact: true }).waitFor(); await p.getByLabel("city", { exact: true }).fill("Lima"); }, { city: "Lima" }],
  ["an exponent", obj({ x: { type: "number" } }, ["x"]), (p) => p.getByLabel("x", { exact: true }).fill("-1.5e3"), { x: -1500 }],
  ["text beyond ASCII", obj({ text: { type: "string" } }, ["text"]), (p) => p.getByLabel("text", { exact: true }).fill("Grüße, 世界 ✓"), { text: "Grüße, 世界 ✓" }],
  ["an array of arrays", obj({ m: { type: "array", items: { type: "array", items: { type: "integer" } } } }, ["m"]),
    async (p) => {
      await p.getByRole("button", { name: "Add m item", exact: true }).click();
      await p.getByRole("button", { name: "Add m item item" }).click();
      await p.getByLabel("m item item", { exact: true }).fill("5");
    }, { m: [[5]] }],
  ["a bare integer input", { type: "integer" }, (p) => p.getByLabel("input", { exact: true }).fill("9"), 9],
  ["a bare array input", { type: "array", items: { type: "string" } },
    async (p) => { await p.getByRole("button", { name: "Add input item" }).click(); await p.getByLabel("input item", { exact: true }).fill("only"); }, ["only"]],
];
for (const [i, [, schema]] of shapes.entries()) await deploy(`shape-${i}`, schema);
await deploy("inert", obj({}), '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">');
await deploy("history", obj({}), "first version");
await deploy("history", obj({}), "second version");
await deploy("slow", obj({ n: { type: "integer" } }), "echoes after 1.5 s", await upload(process.env.SLOW_WASM));
await deploy("stuck", obj({ n: { type: "integer" } }), "echoes after 30 s", await upload(process.env.STUCK_WASM));
await rest("/v1/functions/admin/caller/versions", {
  method: "POST",
  body: { artefact: await upload(process.env.CALLER_WASM), calls: ["admin/shape-0"] },
});

// ---- the browser ------------------------------------------------------------------
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM, args: ["--no-sandbox"] });
const problems = [];
async function newPage() {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) => console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`));
  });
  // Answers of 4xx are the errors the scenarios ask for (shown as values);
  // anything else logged as an error is a problem.
  page.on("console", (m) => {
    if (m.type() === "error" && !/Failed to load resource: the server responded with a status of 4/.test(m.text())) {
      problems.push(`${page.url()}: ${m.text()}`);
    }
  });
  page.on("pageerror", (e) => problems.push(`${page.url()}: ${e.message}`));
  return page;
}
let passed = 0;
async function scenario(name, run) {
  try {
    await run();
  } catch (e) {
    const view = await page.locator("main").textContent().catch(() => "");
    console.log(`not ok - ${name}\n${e.stack}\n--- the page said:\n${view}\n--- logged:\n${problems.join("\n")}`);
    await browser.close();
    process.exit(1);
  }
  passed += 1;
  console.log(`ok - ${name}`);
}
const shot = async (page, name) => { if (shots) await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true }); };
// Moves within the console as its links do (a navigation typed into the address
// bar by the test would be a cross-site one, which a SameSite=Strict cookie is
// not sent with).
const go = (page, hash) => page.evaluate((h) => { location.hash = h; }, hash);
const heading = (page, text) => page.getByRole("heading", { level: 1, name: text, exact: true }).waitFor();
async function signIn(page, token) {
  await page.goto(`${url}/console/`);
  await page.getByLabel("Token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
}

const page = await newPage();
await scenario("the sign-in page asks for a token in a labelled field", async () => {
  await page.goto(`${url}/`);
  assert.equal(new URL(page.url()).pathname, "/console/");
  await page.getByLabel("Token").waitFor();
  await shot(page, "sign-in");
});
await scenario("a wrong token is refused and opens no session", async () => {
  await signIn(page, "swb_nope_wrong");
  await page.getByRole("alert").filter({ hasText: "not accepted" }).waitFor();
  assert.equal((await page.context().cookies()).length, 0);
});
await scenario("signing in keeps the token out of scripts and storage", async () => {
  await signIn(page, admin);
  await heading(page, "Catalog");
  await page.getByText("admin@localhost").waitFor();
  const [cookie] = await page.context().cookies();
  assert.equal(cookie.name, "swb_session");
  assert.ok(cookie.httpOnly && cookie.sameSite === "Strict");
  const seen = await page.evaluate(() => document.cookie + JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + document.documentElement.outerHTML);
  assert.ok(!seen.includes(admin), "the token reached the page");
  await shot(page, "catalog");
});
await scenario("the catalog is searchable", async () => {
  await page.getByLabel("Search").fill("shape-32");
  await page.getByRole("link", { name: "admin/shape-32" }).waitFor();
  assert.equal(await page.getByRole("row").count(), 2, "the search narrowed the list to one");
  await page.getByLabel("Search").fill("no such thing");
  await page.getByText("No function matches.").waitFor();
});
await scenario("a description holding markup is shown as text, inert", async () => {
  await go(page, `#/fn/admin/inert`);
  await heading(page, "admin/inert");
  assert.match(await page.locator("#description").textContent(), /<script>window.__pwned = 1<\/script>/);
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
});
for (const [i, [name, , fill, expected]] of shapes.entries()) {
  await scenario(`a run form for ${name} sends what was typed`, async () => {
    await go(page, `#/fn/admin/shape-${i}`);
    await heading(page, `admin/shape-${i}`);
    await fill(page);
    await page.getByRole("button", { name: "Run", exact: true }).click();
    const output = page.locator("#output");
    await output.waitFor();
    assert.deepEqual(JSON.parse(await output.textContent()), expected);
    if (i === 9) await shot(page, "run-form");
  });
}
await scenario("a failed call shows its error", async () => {
  await go(page, `#/fn/admin/shape-1`);
  await heading(page, "admin/shape-1");
  await page.getByLabel("Edit as JSON").check();
  await page.getByLabel("Input as JSON").fill('{"count":"seven"}');
  await page.getByRole("button", { name: "Run", exact: true }).click();
  await page.getByRole("alert").filter({ hasText: "invalid_input" }).waitFor();
});
await scenario("a run as a job is accepted", async () => {
  await go(page, `#/fn/admin/shape-0`);
  await heading(page, "admin/shape-0");
  await page.getByLabel("name", { exact: true }).fill("Jo");
  await page.getByRole("button", { name: "Run as a job" }).click();
  await page.getByText(/^job .* is queued|^job .* is running|^job .* is succeeded/).waitFor();
});
await scenario("a function's page shows its recent calls, profiles and shares", async () => {
  await rest("/v1/functions/admin/shape-0/profiles/casual", { method: "PUT", body: { salutation: "Hi" } });
  await rest("/v1/functions/admin/shape-0/shares", { method: "POST", body: { email: "dora@example.com", role: "call" } });
  await go(page, `#/fn/admin/shape-0?again=1`);
  await heading(page, "admin/shape-0");
  const recent = page.getByRole("region", { name: "Recent calls" });
  await recent.getByRole("cell", { name: "ok" }).first().waitFor();
  await page.getByRole("region", { name: "Profiles" }).getByRole("cell", { name: "casual" }).waitFor();
  const shared = page.getByRole("region", { name: "Shared with" });
  await shared.getByRole("cell", { name: "dora@example.com" }).waitFor();
  await shared.getByRole("cell", { name: "pending" }).waitFor();
});
await scenario("a version is rolled back", async () => {
  await go(page, `#/fn/admin/history`);
  await heading(page, "admin/history");
  await page.getByText("second version", { exact: true }).waitFor();
  await page.getByRole("button", { name: "Roll back to version 1" }).click();
  await page.getByText("first version", { exact: true }).waitFor();
  assert.equal((await rest("/v1/functions/admin/history")).active_version, 1);
});
await scenario("invocations are listed, filtered and shown", async () => {
  await go(page, `#/invocations?function=admin/shape-0`);
  await heading(page, "Invocations");
  const first = page.getByRole("row").nth(1).getByRole("link");
  const id = await first.textContent();
  await first.click();
  await heading(page, `Invocation ${id}`);
  await page.getByRole("cell", { name: "admin/shape-0" }).waitFor();
  await shot(page, "invocation");
});
await scenario("a job's page follows it live, to its end", async () => {
  const { id } = await rest("/v1/jobs", { method: "POST", body: { function: "admin/slow", input: { n: 1 } } });
  await go(page, `#/job/${id}`);
  await heading(page, `Job ${id}`);
  await page.getByRole("cell", { name: /^(queued|running)$/ }).waitFor();
  // The job takes 1.5 s; its end shows within 2 s of it, with no reload.
  await page.getByRole("cell", { name: "succeeded", exact: true }).waitFor({ timeout: 1500 + 2000 });
  assert.deepEqual(JSON.parse(await page.locator("#job-result").textContent()), { n: 1 });
  await shot(page, "job");
});
await scenario("a job is submitted again with the same input", async () => {
  await page.getByRole("button", { name: "Submit again" }).click();
  const again = page.getByRole("status").getByRole("link");
  await again.click();
  await page.getByRole("cell", { name: "succeeded", exact: true }).waitFor({ timeout: 5000 });
  assert.deepEqual(JSON.parse(await page.locator("#job-result").textContent()), { n: 1 });
});
await scenario("a running job is cancelled", async () => {
  const { id } = await rest("/v1/jobs", { method: "POST", body: { function: "admin/stuck", input: { n: 2 } } });
  await go(page, `#/job/${id}`);
  await heading(page, `Job ${id}`);
  await page.getByRole("cell", { name: /^(queued|running)$/ }).waitFor();
  await page.getByRole("button", { name: "Cancel" }).click();
  await page.getByRole("cell", { name: "cancelled", exact: true }).waitFor({ timeout: 2000 });
  assert.equal((await rest(`/v1/jobs/${id}`)).status, "cancelled");
});
await scenario("the jobs list is filtered and live", async () => {
  await go(page, "#/jobs?status=succeeded");
  await heading(page, "Jobs");
  await page.getByRole("cell", { name: "admin/slow" }).first().waitFor();
  assert.equal(await page.getByRole("cell", { name: "cancelled", exact: true }).count(), 0);
  const before = await page.getByRole("row").count();
  await rest("/v1/jobs", { method: "POST", body: { function: "admin/shape-0", input: { name: "live" } } });
  await page.waitForFunction((n) => document.querySelectorAll("#jobs tr").length > n, before, { timeout: 3000 });
});
await scenario("the workers page shows the workers, live", async () => {
  await go(page, "#/workers");
  await heading(page, "Workers");
  await page.getByRole("cell", { name: "local", exact: true }).waitFor();
  await shot(page, "workers");
});
await scenario("a token is created, shown once, listed and revoked", async () => {
  await go(page, "#/people");
  await heading(page, "People");
  await page.getByLabel("Scopes (space-separated, e.g. call:alice/echo)").fill("call:admin/shape-0");
  await page.getByLabel("Description").fill("from the console");
  await page.getByRole("button", { name: "Create token" }).click();
  const secret = await page.locator("pre.secret").textContent();
  assert.match(secret, /^swb_/);
  const made = (await rest("/v1/tokens")).tokens.find((t) => t.description === "from the console");
  assert.ok(made && !made.revoked_at);
  // It works, and only for what its scope names.
  await fetch(`${url}/v1/functions/admin/shape-0/invoke`, { method: "POST", headers: { authorization: `Bearer ${secret}` }, body: '{"name":"t"}' })
    .then((a) => assert.equal(a.status, 200));
  await shot(page, "people");
  await go(page, "#/catalog");
  await go(page, "#/people");
  await heading(page, "People");
  assert.equal(await page.locator("pre.secret").count(), 0, "shown once");
  await page.getByRole("button", { name: `Revoke ${made.id}` }).click();
  await page.getByRole("cell", { name: /^revoked/ }).first().waitFor();
  assert.ok((await rest("/v1/tokens")).tokens.find((t) => t.id === made.id).revoked_at);
});
await scenario("an administrator adds a user and shares a namespace; the audit log says so", async () => {
  await page.getByLabel("New user (e-mail)").fill("carol@example.com");
  await page.getByRole("button", { name: "Add user" }).click();
  assert.match(await page.locator("pre.secret").textContent(), /^swb_/);
  await page.getByLabel("Share admin with (e-mail)").fill("carol@example.com");
  await page.getByLabel("Role", { exact: true }).first().selectOption("call");
  await page.getByRole("button", { name: "Share admin" }).click();
  await page.getByRole("button", { name: "Unshare admin with carol@example.com" }).waitFor();
  const actions = (await rest("/v1/audit?limit=20")).events.map((e) => e.action);
  assert.ok(actions.includes("user.create") && actions.some((a) => a.startsWith("share")), actions.join(" "));
  await page.getByRole("cell", { name: "user.create" }).first().waitFor();
});
await scenario("blobs upload with progress; a sealed one has no download", async () => {
  await go(page, "#/data");
  await heading(page, "Data");
  await page.getByLabel("File").setInputFiles({ name: "readings.csv", mimeType: "text/csv", buffer: Buffer.from("x,y\n".repeat(50000)) });
  await page.getByRole("button", { name: "Upload" }).click();
  await page.getByRole("cell", { name: "readings.csv", exact: true }).waitFor();
  await page.getByLabel("File").setInputFiles({ name: "patients.csv", mimeType: "text/csv", buffer: Buffer.from("id\n1\n") });
  await page.getByLabel(/^ Sealed/).check();
  await page.getByRole("button", { name: "Upload" }).click();
  await page.getByRole("cell", { name: "patients.csv", exact: true }).waitFor();
  const sealedRow = page.getByRole("row").filter({ hasText: "patients.csv" });
  assert.equal(await sealedRow.getByRole("link", { name: "Download" }).count(), 0);
  await sealedRow.getByText("sealed: functions only").waitFor();
  const plainRow = page.getByRole("row").filter({ hasText: "readings.csv" });
  const href = await plainRow.getByRole("link", { name: "Download" }).getAttribute("href");
  const bytes = await page.evaluate(async (h) => (await (await fetch(h)).text()).length, href);
  assert.equal(bytes, 4 * 50000);
  await shot(page, "data");
});
await scenario("the overview charts calls and errors per function", async () => {
  await go(page, "#/overview");
  await heading(page, "Overview");
  const shape1 = page.getByRole("region", { name: "admin/shape-1", exact: true });
  await shape1.getByRole("img").waitFor();
  // shape-1 was called once as typed and once with a bad input.
  await shape1.getByText(/2 calls in the last hour, 1 failed \(50\.0 %\)/).waitFor();
  await shot(page, "overview");
});
await scenario("an invocation shows its call tree", async () => {
  const answer = await fetch(`${url}/v1/functions/admin/caller/invoke`, { method: "POST", headers: { authorization: `Bearer ${admin}` }, body: '{"name":"tree"}' });
  assert.equal(answer.status, 200, await answer.text());
  const id = answer.headers.get("swb-invocation-id");
  // Records are written in batches, a moment after the call.
  for (let tries = 0; (await rest(`/v1/invocations/${id}/tree`).catch(() => ({ invocations: [] }))).invocations.length < 2; tries++) {
    assert.ok(tries < 100, "the tree's records were written");
    await new Promise((done) => setTimeout(done, 50));
  }
  await go(page, `#/inv/${id}`);
  await page.getByRole("heading", { name: "Call tree" }).waitFor();
  await page.getByText("admin/caller (this call)").waitFor();
  await page.getByRole("link", { name: "admin/shape-0" }).click();
  await page.getByRole("cell", { name: "admin/shape-0" }).waitFor();
});
await scenario("a keyboard alone signs in, finds a function and runs it", async () => {
  const keys = await newPage();
  await keys.goto(`${url}/console/`);
  // The page puts the focus in the token field once it knows nobody is signed
  // in; Enter submits.
  await keys.waitForFunction(() => document.activeElement?.id === "token");
  await keys.keyboard.type(admin);
  await keys.keyboard.press("Enter");
  await heading(keys, "Catalog");
  const tabTo = async (test) => {
    for (let i = 0; i < 80; i++) {
      await keys.keyboard.press("Tab");
      if (await keys.evaluate(test)) return;
    }
    throw new Error("never reached by Tab");
  };
  await tabTo(() => document.activeElement?.id === "search");
  await keys.keyboard.type("shape-0");
  await tabTo(() => document.activeElement?.textContent === "admin/shape-0");
  // Focus is visible (an outline), not shown by colour alone.
  assert.notEqual(await keys.evaluate(() => getComputedStyle(document.activeElement).outlineStyle), "none");
  await keys.keyboard.press("Enter");
  await heading(keys, "admin/shape-0");
  await tabTo(() => document.activeElement?.labels?.[0]?.textContent === "name");
  await keys.keyboard.type("Kay");
  await keys.keyboard.press("Enter");
  assert.deepEqual(JSON.parse(await keys.locator("#output").textContent()), { name: "Kay" });
  await keys.context().close();
});
await scenario("a change without the CSRF token is refused", async () => {
  const status = await page.evaluate(async () => {
    const answer = await fetch("/console/api/v1/namespaces", { method: "POST", headers: { "content-type": "application/json" }, body: '{"name":"csrf-test"}' });
    return answer.status;
  });
  assert.equal(status, 403);
  const names = (await rest("/v1/namespaces")).map((n) => n.name);
  assert.ok(!names.includes("csrf-test"));
});
await scenario("/v1 ignores the session cookie", async () => {
  const status = await page.evaluate(async () => (await fetch("/v1/me")).status);
  assert.equal(status, 401);
});
await scenario("another user sees only what is theirs", async () => {
  const bob = await newPage();
  await signIn(bob, bobToken);
  await heading(bob, "Catalog");
  await bob.getByText("No function matches.").waitFor();
  await go(bob, `#/fn/admin/shape-0`);
  await bob.getByRole("alert").filter({ hasText: "not_found" }).waitFor();
  await go(bob, "#/people");
  await heading(bob, "People");
  assert.equal(await bob.getByRole("heading", { name: "Users" }).count(), 0, "no users section for a non-administrator");
  await bob.getByRole("heading", { name: "Audit log" }).waitFor();
  await go(bob, "#/overview");
  await heading(bob, "Overview");
  await bob.getByText("No calls in the last hour.").waitFor();
  await bob.context().close();
});
await scenario("signing out ends the session", async () => {
  await go(page, "#/catalog");
  await heading(page, "Catalog");
  const cookie = (await page.context().cookies())[0].value;
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByLabel("Token").waitFor();
  const answer = await fetch(`${url}/console/api/v1/me`, { headers: { cookie: `swb_session=${cookie}` } });
  assert.equal(answer.status, 401);
});
await scenario("no page logged an error or broke its security policy", async () => {
  assert.deepEqual(problems, []);
});
await browser.close();
console.log(`${passed} scenarios passed`);
