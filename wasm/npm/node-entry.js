// The node entry of snapbundle-wasm: the wasm-bindgen module, with SHA-256 from node:crypto.
//
// WebAssembly has no SHA instructions; node's OpenSSL has them. The module hashes through
// `globalThis.__snapbundle_sha256` when it exists (and with its own portable code when it does
// not, as in browsers): what is hashed and what the digests must be stay the core's decisions.
"use strict";
const crypto = require("node:crypto");

if (globalThis.__snapbundle_sha256 === undefined) {
  const states = new Map();
  const zeros = new Uint8Array(1 << 16);
  let next = 0;
  Object.defineProperty(globalThis, "__snapbundle_sha256", {
    value: Object.freeze({
      start() {
        const id = next;
        next = (next + 1) >>> 0;
        states.set(id, crypto.createHash("sha256"));
        return id;
      },
      update(id, bytes) {
        states.get(id).update(bytes);
      },
      zeros(id, len) {
        const h = states.get(id);
        for (; len > 0; len -= Math.min(len, zeros.length)) {
          h.update(len >= zeros.length ? zeros : zeros.subarray(0, len));
        }
      },
      finish(id) {
        const d = states.get(id).digest();
        states.delete(id);
        return new Uint8Array(d.buffer, d.byteOffset, d.length);
      },
      drop(id) {
        states.delete(id);
      },
    }),
  });
}

module.exports = require("./snapbundle_wasm.js");
