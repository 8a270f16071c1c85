// The console's list pages with a full store: 100,000 invocation records and
// 10,000 jobs, each page rendered 30 times in chromium; prints the p50 and p95 of
// the time from asking for a page to its table on screen (BENCHMARKS.md).
//
//   swb up --data-dir /tmp/bench &    # (a release build, for the numbers)
//   SWB_URL=http://127.0.0.1:7070 ADMIN_TOKEN=$(cat /tmp/bench/admin.token) \
//   ECHO_WASM=path/to/echo.wasm CHROMIUM=/usr/bin/chromium node bench.mjs
import { chromium } from "playwright-core";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";

const url = process.env.SWB_URL;
const token = process.env.ADMIN_TOKEN;
const auth = { authorization: `Bearer ${token}` };
const CALLS = Number(process.env.CALLS || 100_000);
const JOBS = Number(process.env.JOBS || 10_000);

async function rest(path, init = {}) {
  const answer = await fetch(`${url}${path}`, { ...init, headers: { ...auth, ...(init.headers || {}) } });
  if (!answer.ok) throw new Error(`${path}: ${answer.status} ${await answer.text()}`);
  return answer;
}

// ---- the store: a function, its calls, its jobs -----------------------------------
const module = readFileSync(process.env.ECHO_WASM);
const digest = `sha256:${createHash("sha256").update(module).digest("hex")}`;
await rest(`/v1/artefacts/${digest}`, { method: "PUT", body: module });
await rest("/v1/functions/admin/bench-echo/versions", {
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify({ artefact: digest }),
});
const started = Date.now();
let next = 0;
await Promise.all(Array.from({ length: 32 }, async () => {
  while (next < CALLS) {
    next += 1;
    await rest("/v1/functions/admin/bench-echo/invoke", { method: "POST", body: `{"n":${next}}` });
  }
}));
for (let i = 0; i < JOBS; i += 1000) {
  const jobs = Array.from({ length: Math.min(1000, JOBS - i) }, (_, k) => ({ function: "admin/bench-echo", input: { job: i + k } }));
  await rest("/v1/jobs/batch", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ jobs }) });
}
console.error(`seeded ${CALLS} calls and ${JOBS} jobs in ${((Date.now() - started) / 1000).toFixed(1)} s`);

// ---- the pages --------------------------------------------------------------------
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM, args: ["--no-sandbox"] });
const page = await (await browser.newContext()).newPage();
await page.goto(`${url}/console/`);
await page.getByLabel("Token").fill(token);
await page.getByRole("button", { name: "Sign in" }).click();
await page.getByRole("heading", { level: 1, name: "Catalog" }).waitFor();

const pages = [
  ["Catalog", "#/catalog", "#view table"],
  ["Invocations", "#/invocations", "#view table"],
  ["Jobs", "#/jobs", "#jobs table"],
  ["Workers", "#/workers", "#workers table"],
  ["Data", "#/data", "#view h2"],
  ["People", "#/people", "#view section:last-of-type table"],
  ["Overview", "#/overview", "#view svg"],
];
const ROUNDS = 30;
const times = Object.fromEntries(pages.map(([name]) => [name, []]));
for (let round = 0; round < ROUNDS; round++) {
  // Each page follows another, so it is built from nothing; it is on screen when
  // its heading is and its table (or chart) is.
  for (const [name, hash, ready] of pages) {
    const t0 = Date.now();
    await page.evaluate((h) => { location.hash = h; }, `${hash}?r=${round}`);
    await page
      .waitForFunction(
        ([title, sel]) => document.querySelector("#view h1")?.textContent === title && document.querySelector(sel),
        [name, ready],
        { polling: "raf" },
      )
      .catch(async (e) => {
        throw new Error(`${name} did not show: ${e.message}\n${await page.locator("main").textContent()}`);
      });
    times[name].push(Date.now() - t0);
  }
}
await browser.close();
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];
console.log("| page | p50 ms | p95 ms |\n| --- | --- | --- |");
for (const [name] of pages) console.log(`| ${name} | ${pct(times[name], 50)} | ${pct(times[name], 95)} |`);
