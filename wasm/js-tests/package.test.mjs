// The npm package as a user gets it: `npm pack`'s tarball installed into a scratch project,
// then required from node, type-checked with tsc, and its wasm module's imports listed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, writeFileSync, copyFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..");
const fixtures = join(root, "tests", "fixtures", "microsandbox-0.6.2");
const npmDir = join(root, "target", "npm");
const tarball = readdirSync(npmDir).find((f) => /^snapbundle-wasm-.*\.tgz$/.test(f));

const scratch = mkdtempSync(join(tmpdir(), "snapbundle-wasm-"));
writeFileSync(join(scratch, "package.json"), JSON.stringify({ name: "scratch", private: true }));
execFileSync("npm", ["install", "--no-audit", "--no-fund", "--offline", join(npmDir, tarball)], {
  cwd: scratch,
  stdio: "inherit",
});
const require = createRequire(join(scratch, "index.js"));
const pkg = require("snapbundle-wasm");

function expectOf(name) {
  return JSON.parse(readFileSync(join(fixtures, `${name}.expect.json`), "utf8"));
}

test("the installed tarball validates a fixture streamed in chunks", () => {
  const name = "b-chain3-with-parents.tar.zst";
  const bytes = readFileSync(join(fixtures, name));
  const v = new pkg.Validator();
  for (let at = 0; at < bytes.length; at += 333) v.push(bytes.subarray(at, at + 333));
  assert.equal(v.compressedBytes, bytes.length);
  const report = v.finish();
  const expect = expectOf(name);
  assert.equal(report.head, expect.head_digest);
  assert.equal(report.head_prefix, expect.head_name);
  assert.deepEqual(report.snapshots.map((s) => s.digest), expect.snapshot_digests);
  assert.equal(report.snapshots.find((s) => s.is_head).size_bytes, expect.head_size_bytes);
  assert.throws(() => v.push(bytes), (e) => e.code === "finished" && e.kind === "caller");
});

test("a hostile fixture throws an Error with the core's message, code and kind", () => {
  const bytes = readFileSync(join(fixtures, "r-dotdot-path.tar.zst"));
  const v = new pkg.Validator({ max_window_size: 8 << 20 });
  assert.throws(
    () => {
      v.push(bytes);
      v.finish();
    },
    (e) =>
      e instanceof Error &&
      e.code === "unsafe_path" &&
      e.kind === "tar" &&
      e.message === "entry #2 'sha256-871b1eb5f43ec07e/../../evil.txt' at byte 67072: unsafe path: '.' or '..' component",
  );
});

test("limits are options: unknown fields and non-numbers are refused", () => {
  assert.throws(() => new pkg.Validator({ max_windw_size: 1 }), (e) => e.code === "invalid_limits");
  assert.throws(() => new pkg.Validator({ max_entries: "many" }), (e) => e.code === "invalid_limits");
  const bytes = readFileSync(join(fixtures, "a-single.tar.zst"));
  assert.throws(() => pkg.validate(bytes, { max_entries: 1 }), (e) => e.kind === "limit");
  assert.equal(pkg.validate(bytes).container, "zstd");
});

test("the TypeScript declarations type-check a usage file (tsc --strict)", () => {
  copyFileSync(join(here, "usage.ts"), join(scratch, "usage.ts"));
  copyFileSync(join(here, "tsconfig.json"), join(scratch, "tsconfig.json"));
  execFileSync(join(here, "node_modules", ".bin", "tsc"), ["-p", scratch], { stdio: "inherit" });
});

test("the wasm module imports only wasm-bindgen's glue, nothing from the environment", () => {
  const wasm = readFileSync(join(scratch, "node_modules", "snapbundle-wasm", "node", "snapbundle_wasm_bg.wasm"));
  const imports = WebAssembly.Module.imports(new WebAssembly.Module(wasm));
  const modules = [...new Set(imports.map((i) => i.module))];
  assert.deepEqual(modules, ["./snapbundle_wasm_bg.js"], `import modules: ${modules}`);
  for (const i of imports) {
    assert.equal(i.kind, "function", `${i.name} is a ${i.kind}`);
    assert.match(i.name, /^__wbg_|^__wbindgen_/, `unexpected import ${i.name}`);
  }
  const names = imports.map((i) => i.name.replace(/_[0-9a-f]{16}$/, "")).sort();
  console.log(`wasm imports (${names.length}): ${names.join(" ")}`);
});
