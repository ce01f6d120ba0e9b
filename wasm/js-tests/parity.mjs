// Judges every bundle of a directory with the node build of snapbundle-wasm and prints one JSON
// line per file: {"case", "report"} or {"case", "code", "kind", "message"}. Used by
// tests/tests/wasm_parity.rs, which compares the lines with the native and wasmtime verdicts.
//   node parity.mjs <package dir (target/npm/snapbundle-wasm)> <cases dir>
import { readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";

const [pkgDir, casesDir] = process.argv.slice(2);
const { Validator } = createRequire(import.meta.url)(resolve(pkgDir, "node", "snapbundle_wasm.js"));
const out = [];
for (const name of readdirSync(casesDir).sort()) {
  const bytes = readFileSync(join(casesDir, name));
  const v = new Validator();
  try {
    for (let at = 0; at < bytes.length; at += 65536) v.push(bytes.subarray(at, at + 65536));
    out.push(JSON.stringify({ case: name, report: v.finish() }));
  } catch (e) {
    out.push(JSON.stringify({ case: name, code: e.code, kind: e.kind, message: e.message }));
  } finally {
    v.free();
  }
}
process.stdout.write(out.join("\n") + "\n");
