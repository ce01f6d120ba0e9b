// Judges every bundle of a directory with the node build of snapbundle-wasm and prints one JSON
// line per file: {"case", "report"} or {"case", "code", "kind", "message"}, then a last line
// {"sha256_from_node_crypto": N}: how many SHA-256 computations node:crypto ran. Used by
// tests/tests/wasm_parity.rs, which compares the lines with the native and wasmtime verdicts.
//   node parity.mjs <package dir (target/npm/snapbundle-wasm)> <cases dir> [entry|portable]
// entry (the default): the package's node entry, which hashes with node:crypto; portable: the
// wasm-bindgen module alone, which hashes with its own portable code (as in browsers).
import { readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";

const [pkgDir, casesDir, mode = "entry"] = process.argv.slice(2);
const require = createRequire(import.meta.url);
const crypto = require("node:crypto");
const createHash = crypto.createHash;
let fromNodeCrypto = 0;
crypto.createHash = (...args) => {
  fromNodeCrypto += 1;
  return createHash(...args);
};
const { Validator } = require(mode === "portable" ? resolve(pkgDir, "node", "snapbundle_wasm.js") : resolve(pkgDir));
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
out.push(JSON.stringify({ sha256_from_node_crypto: fromNodeCrypto }));
process.stdout.write(out.join("\n") + "\n");
