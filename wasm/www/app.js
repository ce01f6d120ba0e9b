// The validation page: streams the chosen file through the WebAssembly validator in chunks
// (File.stream()), shows progress, then the verdict. Presentation only: every rule is the core's.
import init, { Validator, version } from "./pkg/snapbundle_wasm.js";

const $ = (id) => document.getElementById(id);
const ready = init().then(() => {
  $("version").textContent = version();
  document.body.dataset.ready = "true";
});

function size(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u + 1 < units.length) {
    v /= 1024;
    u += 1;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function digest(d, id) {
  return el("code", { class: "digest", title: d, ...(id ? { id } : {}) }, d);
}

function chainOf(report) {
  const byDigest = new Map(report.snapshots.map((s) => [s.digest, s]));
  const chain = [];
  let cur = report.snapshots.find((s) => s.is_head);
  while (cur && chain.length <= report.snapshots.length) {
    chain.unshift(cur);
    cur = cur.parent && cur.parent_in_bundle ? byDigest.get(cur.parent) : undefined;
  }
  return chain;
}

function integrityText(i) {
  if (i.status === "verified") return `${i.algorithm} ✓`;
  if (i.status === "not_included") return `not included: the base must provide it${i.algorithm ? ` (${i.algorithm})` : ""}`;
  return "not recorded";
}

/** A microsandbox 0.7 `.msb` archive: the report's `msb` section. */
function showMsb(file, report) {
  const m = report.msb;
  const v = $("verdict");
  v.replaceChildren();
  v.className = "valid";
  v.append(el("h2", {}, el("span", { class: "badge ok", id: "verdict-word" }, "valid"), ` ${file.name}`));
  const head = m.snapshots.find((s) => s.is_head);
  v.append(
    el("dl", { class: "summary" },
      el("dt", {}, "archive"), el("dd", { id: "generation" }, `microsandbox 0.7 .msb (${m.completeness})`),
      el("dt", {}, "head"), el("dd", {}, digest(report.head, "head-digest"), ` (${report.head_prefix})`),
      el("dt", {}, "container"),
      el("dd", {}, report.container === "zstd" ? `zstd, ${report.zstd_frames} frame(s)` : "plain tar"),
      el("dt", {}, "sizes"),
      el("dd", {}, `${size(report.compressed_bytes)} in, ${size(report.decompressed_bytes)} of tar, ${report.entries} entries`),
      el("dt", {}, "image"), el("dd", {}, head ? head.image_ref : "-"),
      el("dt", {}, "labels"),
      el("dd", {}, head && Object.keys(head.labels).length
        ? Object.entries(head.labels).map(([k, x]) => `${k}=${x}`).join(", ") : "-"),
    ),
  );
  const rows = m.snapshots.map((s, i) =>
    el("tr", { class: s.is_head ? "head" : "" },
      el("td", {}, i + 1),
      el("td", {}, s.snapshot_id, s.is_head ? el("span", { class: "badge" }, "head") : ""),
      el("td", {}, digest(s.descriptor_digest)),
      el("td", {}, s.parent ?? "-", s.parent && !s.parent_in_archive ? " (absent)" : ""),
      el("td", { class: "num" }, s.scope === "checkpoint" ? "checkpoint" : size(s.virtual_size)),
      el("td", { class: "num" }, s.layers.length),
    ));
  v.append(
    el("h3", {}, `Snapshots (${m.snapshots.length})`),
    el("table", { class: "snapshots" },
      el("thead", {}, el("tr", {}, ...["#", "snapshot", "descriptor", "parent", "size", "layers"].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...rows)),
  );
  const layers = m.layers.map((l) =>
    el("tr", {},
      el("td", {}, l.layer_id),
      el("td", {}, l.format),
      el("td", { class: "num" }, size(l.apparent_size)),
      el("td", {}, integrityText(l.integrity)),
    ));
  v.append(
    el("h3", {}, `Layers (${m.layers.length})`),
    el("table", { class: "files" },
      el("thead", {}, el("tr", {}, ...["layer", "format", "size", "integrity"].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...layers)),
    el("h3", {}, "Images"),
    el("p", { class: m.images.length ? "" : "muted" },
      m.images.length ? `${m.images.length} file(s), ${size(m.images.reduce((a, i) => a + i.size, 0))}` : "none: the image is not in the archive"),
  );
  for (const c of m.checkpoints) {
    v.append(
      el("h3", {}, `Checkpoint ${c.checkpoint_id} (${c.snapshot_id})`),
      el("p", {}, `${c.architecture}, ${c.capture_intent}: ${c.objects} object(s), ${c.disk_layers} disk layer(s), ` +
        `${c.owned_payloads} owned payload(s), ${size(c.bytes)}` +
        (c.not_included ? `, ${c.not_included} from its base` : "")),
    );
  }
  if (m.closure.length) {
    const verified = m.closure.filter((x) => x.verified).length;
    v.append(
      el("h3", {}, `Checkpoint and owned-volume members (${m.closure.length})`),
      el("p", {}, `${verified} with a verified content digest`),
    );
  }
  if (m.dependencies.length) {
    v.append(el("h3", {}, "Needs from its base"), el("ul", {}, ...m.dependencies.map((d) => el("li", {}, d))));
  }
  v.hidden = false;
}

/** A released archive of microsandbox 0.6.7 – 0.6.16: the report's `released` section. */
function showReleased(file, report) {
  const g = report.released;
  const v = $("verdict");
  v.replaceChildren();
  v.className = "valid";
  v.append(el("h2", {}, el("span", { class: "badge ok", id: "verdict-word" }, "valid"), ` ${file.name}`));
  const head = g.snapshots.find((s) => s.is_head);
  v.append(
    el("dl", { class: "summary" },
      el("dt", {}, "archive"),
      el("dd", { id: "generation" }, `microsandbox 0.6.7 – 0.6.16 released archive (${g.inventory ? "archive.json inventory checked" : "no archive.json inventory"})`),
      el("dt", {}, "head"), el("dd", {}, digest(report.head, "head-digest"), ` (${report.head_prefix})`),
      el("dt", {}, "container"),
      el("dd", {}, report.container === "zstd" ? `zstd, ${report.zstd_frames} frame(s)` : "plain tar"),
      el("dt", {}, "sizes"),
      el("dd", {}, `${size(report.compressed_bytes)} in, ${size(report.decompressed_bytes)} of tar, ${report.entries} entries`),
      el("dt", {}, "image"), el("dd", {}, head ? head.image_ref : "-"),
      el("dt", {}, "labels"),
      el("dd", {}, head && Object.keys(head.labels).length
        ? Object.entries(head.labels).map(([k, x]) => `${k}=${x}`).join(", ") : "-"),
    ),
  );
  const rows = g.snapshots.map((s, i) =>
    el("tr", { class: s.is_head ? "head" : "" },
      el("td", {}, i + 1),
      el("td", {}, digest(s.digest), s.is_head ? el("span", { class: "badge" }, "head") : ""),
      el("td", {}, s.snapshot_id),
      el("td", {}, s.parent ?? "-", s.parent && !s.parent_in_archive ? " (absent)" : ""),
      el("td", { class: "num" }, size(s.size_bytes)),
      el("td", {}, integrityText(s.integrity)),
    ));
  v.append(
    el("h3", {}, `Snapshots (${g.snapshots.length})`),
    el("table", { class: "snapshots" },
      el("thead", {}, el("tr", {}, ...["#", "digest", "0.7 id", "parent", "upper", "integrity"].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...rows)),
    el("h3", {}, "Images"),
    el("p", { class: g.images.length ? "" : "muted" },
      g.images.length ? `${g.images.length} file(s), ${size(g.images.reduce((a, i) => a + i.size, 0))}` : "none: the image is not in the archive"),
  );
  v.hidden = false;
}

function showReport(file, report) {
  if (report.msb) return showMsb(file, report);
  if (report.released) return showReleased(file, report);
  const v = $("verdict");
  v.replaceChildren();
  v.className = "valid";
  v.append(el("h2", {}, el("span", { class: "badge ok", id: "verdict-word" }, "valid"), ` ${file.name}`));
  const head = report.snapshots.find((s) => s.is_head);
  v.append(
    el("dl", { class: "summary" },
      el("dt", {}, "head"), el("dd", {}, digest(report.head, "head-digest"), ` (${report.head_prefix})`),
      el("dt", {}, "container"),
      el("dd", {}, report.container === "zstd" ? `zstd, ${report.zstd_frames} frame(s)` : "plain tar"),
      el("dt", {}, "sizes"),
      el("dd", {}, `${size(report.compressed_bytes)} in, ${size(report.decompressed_bytes)} of tar, ${report.entries} entries`),
      el("dt", {}, "image"), el("dd", {}, head ? `${head.image_ref}` : "-"),
    ),
  );

  const chain = chainOf(report);
  const chainEl = el("ol", { class: "chain", id: "chain" });
  if (chain.length && chain[0].parent && !chain[0].parent_in_bundle) {
    chainEl.append(el("li", { class: "absent", title: chain[0].parent }, "parent not bundled"));
  }
  for (const s of chain) {
    chainEl.append(el("li", { class: s.is_head ? "head" : "" }, s.prefix, s.is_head ? el("span", { class: "badge" }, "head") : ""));
  }
  v.append(el("h3", {}, "Chain"), chainEl);

  const rows = report.snapshots.map((s, i) =>
    el("tr", { class: s.is_head ? "head" : "" },
      el("td", {}, i + 1),
      el("td", {}, s.prefix, s.is_head ? el("span", { class: "badge" }, "head") : ""),
      el("td", {}, digest(s.digest)),
      el("td", {}, s.parent ? digest(s.parent) : "-", s.parent && !s.parent_in_bundle ? " (absent)" : ""),
      el("td", { class: "num" }, size(s.size_bytes)),
      el("td", {}, s.integrity.status === "verified" ? `${s.integrity.algorithm} ✓` : "not recorded"),
    ));
  v.append(
    el("h3", {}, `Snapshots (${report.snapshots.length})`),
    el("table", { class: "snapshots" },
      el("thead", {}, el("tr", {}, ...["#", "directory", "digest", "parent", "upper", "integrity"].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...rows)),
  );

  if (report.cache) {
    const c = report.cache;
    v.append(
      el("h3", {}, "Image cache"),
      el("p", {}, `${c.image_ref} · ${c.layers} layer(s) · manifest `, digest(c.manifest_digest)),
    );
  } else {
    v.append(el("h3", {}, "Image cache"), el("p", { class: "muted" }, "none: the image is not bundled"));
  }

  const files = report.files.map((f) =>
    el("tr", {},
      el("td", {}, `${f.area}/${f.path}`),
      el("td", {}, f.role.replace("_", " ")),
      el("td", { class: "num" }, size(f.size)),
      el("td", {}, digest(f.digest), ...(f.algorithm === "sha256" ? [] : [` ${f.algorithm}`])),
    ));
  v.append(
    el("h3", {}, `Files (${report.files.length})`),
    el("table", { class: "files" },
      el("thead", {}, el("tr", {}, ...["path", "role", "size", "digest"].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...files)),
  );
  v.hidden = false;
}

function showError(file, e) {
  const v = $("verdict");
  v.replaceChildren();
  v.className = "invalid";
  v.append(
    el("h2", {}, el("span", { class: "badge bad", id: "verdict-word" }, "invalid"), ` ${file.name}`),
    el("p", { id: "error-message", class: "error" }, e.message ?? String(e)),
    el("dl", { class: "summary" },
      el("dt", {}, "code"), el("dd", {}, el("code", { id: "error-code" }, e.code ?? "-")),
      el("dt", {}, "layer"), el("dd", {}, e.kind ?? "-")),
  );
  v.hidden = false;
}

async function check(file) {
  await ready;
  $("verdict").hidden = true;
  $("progress").hidden = false;
  $("file-name").textContent = file.name;
  const bar = $("bar");
  const text = $("progress-text");
  document.body.dataset.state = "checking";
  const v = new Validator();
  const t0 = performance.now();
  try {
    const reader = file.stream().getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      v.push(value);
      bar.value = file.size ? v.compressedBytes / file.size : 1;
      text.textContent = `${size(v.compressedBytes)} of ${size(file.size)}`;
    }
    const report = v.finish();
    bar.value = 1;
    showReport(file, report);
    document.body.dataset.state = "valid";
  } catch (e) {
    showError(file, e);
    document.body.dataset.state = "invalid";
  } finally {
    document.body.dataset.ms = String(Math.round(performance.now() - t0));
    v.free();
  }
}

$("file").addEventListener("change", (ev) => {
  const f = ev.target.files?.[0];
  if (f) check(f);
});
const drop = $("drop");
drop.addEventListener("dragover", (ev) => {
  ev.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (ev) => {
  ev.preventDefault();
  drop.classList.remove("over");
  const f = ev.dataTransfer?.files?.[0];
  if (f) check(f);
});
