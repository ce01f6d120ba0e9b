// Type-checked (tsc --noEmit --strict) against the installed package: the generated declarations
// must describe the streaming API, the report and the error as `docs/wasm.md` shows them.
import { Validator, validate, version } from "snapbundle-wasm";
import type { LimitsOptions, Report, SnapshotReport, SnapbundleError } from "snapbundle-wasm";

const limits: LimitsOptions = { max_window_size: 64 << 20, max_entries: 1000 };
const v = new Validator(limits);
declare const bytes: Uint8Array;
declare const console: { log(...args: unknown[]): void };
for (let at = 0; at < bytes.length; at += 4096) v.push(bytes.subarray(at, at + 4096));
const progress: number = v.compressedBytes + v.decompressedBytes;
try {
  const report: Report = v.finish();
  const head: SnapshotReport | undefined = report.snapshots.find((s) => s.is_head);
  const verified: string = head?.integrity.status === "verified" ? head.integrity.digest : "not recorded";
  const cacheFiles: number = report.cache?.files.length ?? 0;
  const sizes: number = report.files.reduce((n, f) => n + f.size, 0);
  console.log(report.head, verified, cacheFiles, sizes, progress, version());
} catch (e) {
  const err = e as SnapbundleError;
  console.log(err.code, err.kind, err.message);
}
const again: Report = validate(bytes);
console.log(again.container === "zstd" ? again.zstd_frames : 0);
