// The validation page in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core): fixtures go through the real file input; screenshots are kept in
// target/artifacts/ for a person to look at.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { serve } from "./serve.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..");
const fixtures = join(root, "tests", "fixtures", "microsandbox-0.6.2");
const artifacts = join(root, "target", "artifacts");
mkdirSync(artifacts, { recursive: true });

let server;
let browser;
let page;

before(async () => {
  server = await serve();
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  const offline = [];
  page.on("request", (r) => { if (!r.url().startsWith(server.url)) offline.push(r.url()); });
  await page.goto(server.url);
  await page.waitForSelector("body[data-ready=true]");
  assert.deepEqual(offline, [], "the page must load nothing from elsewhere");
});

after(async () => {
  await browser?.close();
  server?.close();
});

async function choose(name, dir = fixtures) {
  await page.evaluate(() => { document.body.dataset.state = ""; });
  await page.setInputFiles("#file", join(dir, name));
  await page.waitForSelector("body[data-state=valid], body[data-state=invalid]");
}

test("a chain bundle shows its head digest, the chain with the head marked, and the files", async () => {
  const name = "b-chain3-with-parents.tar.zst";
  const expect = JSON.parse(readFileSync(join(fixtures, `${name}.expect.json`), "utf8"));
  await choose(name);
  assert.equal(await page.textContent("#verdict-word"), "valid");
  assert.equal(await page.textContent("#head-digest"), expect.head_digest);
  const chain = await page.$$eval("#chain li", (lis) => lis.map((li) => [li.textContent, li.className]));
  assert.equal(chain.length, 3);
  assert.deepEqual(chain[2], [`${expect.head_name}head`, "head"]);
  assert.equal(await page.getAttribute("#bar", "value"), "1");
  await page.screenshot({ path: join(artifacts, "wasm-page-valid.png"), fullPage: true });
});

test("a bundle with an image cache shows the cache", async () => {
  await choose("d-with-image-2layers.tar.zst");
  assert.equal(await page.textContent("#verdict-word"), "valid");
  assert.match(await page.textContent("#verdict"), /2 layer\(s\)/);
  await page.screenshot({ path: join(artifacts, "wasm-page-image.png"), fullPage: true });
});

test("a microsandbox 0.7 .msb archive shows its snapshots, layers and labels", async () => {
  const dir = join(root, "tests", "fixtures", "microsandbox-0.7.13");
  const expect = JSON.parse(readFileSync(join(dir, "labels.expect.json"), "utf8"));
  await choose("labels.msb", dir);
  assert.equal(await page.textContent("#verdict-word"), "valid");
  assert.match(await page.textContent("#generation"), /^microsandbox 0\.7 \.msb/);
  assert.equal(await page.textContent("#head-digest"), expect.head_digest);
  const text = await page.textContent("#verdict");
  assert.ok(text.includes(expect.head), `the head snapshot id ${expect.head} is shown`);
  assert.match(text, /owner=oracle, stage=deps/);
  assert.match(text, /Layers \(1\)/);
  await page.screenshot({ path: join(artifacts, "wasm-page-msb.png"), fullPage: true });
  await choose("neg-tampered-payload.msb", dir);
  assert.equal(await page.textContent("#verdict-word"), "invalid");
  assert.equal(await page.textContent("#error-code"), "msb_transport_mismatch");
});

test("a released 0.6.7 - 0.6.16 archive shows its snapshots and a hostile one its error", async () => {
  // Released archives come from the hostile-input corpus (no real one is in the fixtures):
  // `cargo test` writes it to target/corpus before scripts/test.sh runs this file.
  const dir = join(root, "target", "corpus", "m2-released");
  assert.ok(existsSync(dir), `${dir} is missing: run cargo test -p snapbundle-tests --test corpus first`);
  const sidecars = readdirSync(dir).filter((n) => n.endsWith(".json")).sort()
    .map((n) => ({ name: n.replace(/\.json$/, ".bundle"), ...JSON.parse(readFileSync(join(dir, n), "utf8")) }));
  const good = sidecars.find((c) => c.expect === "accept" && c.rule.includes("three snapshots"));
  assert.ok(good, "the corpus holds the three-snapshot released archive");
  await choose(good.name, dir);
  assert.equal(await page.textContent("#verdict-word"), "valid");
  assert.match(await page.textContent("#generation"), /^microsandbox 0\.6\.7 – 0\.6\.16 released archive \(archive\.json inventory checked\)/);
  assert.match(await page.textContent("#head-digest"), /^sha256:[0-9a-f]{64}$/);
  const text = await page.textContent("#verdict");
  assert.match(text, /Snapshots \(3\)/);
  assert.match(text, /✓/, "an upper with its recorded integrity verified");
  await page.screenshot({ path: join(artifacts, "wasm-page-released.png"), fullPage: true });
  const bad = sidecars.find((c) => c.expect !== "accept");
  await choose(bad.name, dir);
  assert.equal(await page.textContent("#verdict-word"), "invalid");
  assert.equal(await page.textContent("#error-code"), bad.expect.error);
});

test("a hostile bundle shows the precise error", async () => {
  await choose("r-dotdot-path.tar.zst");
  assert.equal(await page.textContent("#verdict-word"), "invalid");
  assert.equal(
    await page.textContent("#error-message"),
    "entry #2 'sha256-871b1eb5f43ec07e/../../evil.txt' at byte 67072: unsafe path: '.' or '..' component",
  );
  assert.equal(await page.textContent("#error-code"), "unsafe_path");
  await page.screenshot({ path: join(artifacts, "wasm-page-invalid.png"), fullPage: true });
});
