// Drag-and-drop upload with a progress bar. Attached to [data-upload]; re-attached on htmx:load.
// Files go up in small batches (an image travels with its .json/.txt caption) so progress is
// real and one bad file never sinks the rest.
(function () {
  "use strict";

  // A request per 16 files or 48 MB, whichever comes first: small enough that the progress
  // bar moves often and a refused request costs little, far under the server's per-request
  // limit (ATELIER_MAX_UPLOAD_MB, 2 GB by default), yet many files per request so the
  // request overhead stays small. A file over 48 MB still goes, alone in its batch.
  const BATCH_FILES = 16;
  const BATCH_BYTES = 48 * 1024 * 1024;
  const SIDECAR = /\.(json|txt)$/i;

  function stem(name) {
    const base = name.split("/").pop();
    const dot = base.lastIndexOf(".");
    return dot > 0 ? base.slice(0, dot) : base;
  }

  // Groups of files that must travel together: an image and its caption sidecar.
  function groups(files) {
    const byStem = new Map();
    for (const f of files) {
      const key = (f.relPath || f.name).replace(/\.[^./]+$/, "");
      if (!byStem.has(key)) byStem.set(key, []);
      byStem.get(key).push(f);
    }
    return [...byStem.values()];
  }

  function batches(files) {
    const out = [];
    let cur = [], bytes = 0;
    for (const g of groups(files)) {
      const gBytes = g.reduce((n, f) => n + f.size, 0);
      if (cur.length && (cur.length + g.length > BATCH_FILES || bytes + gBytes > BATCH_BYTES)) {
        out.push(cur); cur = []; bytes = 0;
      }
      cur.push(...g); bytes += gBytes;
    }
    if (cur.length) out.push(cur);
    return out;
  }

  // Files of a dropped folder, recursively, hidden entries skipped.
  async function filesFromEntry(entry, prefix) {
    if (entry.name.startsWith(".")) return [];
    if (entry.isFile) {
      const file = await new Promise((ok, bad) => entry.file(ok, bad));
      file.relPath = prefix + entry.name;
      return [file];
    }
    const reader = entry.createReader();
    const all = [];
    for (;;) {
      const chunk = await new Promise((ok, bad) => reader.readEntries(ok, bad));
      if (!chunk.length) break;
      for (const child of chunk) all.push(...await filesFromEntry(child, prefix + entry.name + "/"));
    }
    return all;
  }

  async function droppedFiles(dt) {
    const entries = [...(dt.items || [])]
      .map((item) => item.webkitGetAsEntry && item.webkitGetAsEntry())
      .filter(Boolean);
    if (!entries.length) return [...dt.files];
    const all = [];
    for (const e of entries) all.push(...await filesFromEntry(e, ""));
    return all;
  }

  function post(url, batch, onProgress) {
    return new Promise((resolve) => {
      const form = new FormData();
      for (const f of batch) form.append("files", f, f.name);
      const xhr = new XMLHttpRequest();
      xhr.open("POST", url);
      xhr.responseType = "json";
      xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
      xhr.onload = () => resolve({ status: xhr.status, body: xhr.response });
      xhr.onerror = () => resolve({ status: 0, body: null });
      xhr.send(form);
    });
  }

  // Refused files go above everything else, where the eye lands first.
  function line(list, cls, text) {
    const li = document.createElement("li");
    li.className = cls;
    li.textContent = text;  // never innerHTML: file names are user data
    const firstOther = cls === "refused" ? list.querySelector(":scope > li:not(.refused)") : null;
    list.insertBefore(li, firstOther);
  }

  function newUploadId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
  }

  // What the server flagged on an imported image, in the words of the grid's badges.
  function importFlags(o, resolution, smallest) {
    const out = [];
    for (const other of o.near_duplicate_of || []) out.push(`near-duplicate of ${other}`);
    if (o.unusable) out.push(`unusable for training (${o.width}×${o.height} is smaller than the smallest training bucket, ${smallest}×${smallest} px: the trainer would upscale it; trash it or import a larger copy)`);
    else if (o.low_resolution) out.push(`low resolution (${o.width}×${o.height}: trains below ${resolution} px)`);
    if (o.ambiguous_boxes) out.push("boxes could be 0..1000 or pixels: choose on the dataset page");
    return out;
  }

  async function upload(root, files) {
    // The batches of one upload share an id: the import history shows them as one import.
    const uploadId = newUploadId();
    const url = `${root.dataset.url}?upload=${encodeURIComponent(uploadId)}`;
    const historyLink = root.querySelector("[data-upload-history]");
    const maxBytes = Number(root.dataset.maxFileMb) * 1024 * 1024;
    const bar = root.querySelector("[data-progress]");
    const status = root.querySelector("[data-upload-status]");
    const report = root.querySelector("[data-upload-report]");
    report.replaceChildren();
    const tally = { imported: 0, duplicates: 0, refused: 0, near: 0, undecided: 0 };
    const sendable = [];
    for (const f of files) {
      if (f.size > maxBytes) {
        tally.refused++;
        line(report, "refused", `${f.name}: refused, the file is over the ${root.dataset.maxFileMb} MB limit`);
      } else sendable.push(f);
    }
    const total = sendable.reduce((n, f) => n + f.size, 0) || 1;
    let done = 0;
    bar.hidden = false;
    bar.value = 0;
    root.classList.add("busy");
    for (const batch of batches(sendable)) {
      const size = batch.reduce((n, f) => n + f.size, 0);
      status.textContent = `Uploading… ${Math.round((100 * done) / total)}%`;
      const res = await post(url, batch, (frac) => {
        bar.value = (100 * (done + frac * size)) / total;
        status.textContent = `Uploading… ${Math.round(bar.value)}%`;
      });
      done += size;
      bar.value = (100 * done) / total;
      if (res.status !== 200 || !res.body) {
        const why = (res.body && res.body.detail) || (res.status ? `the server answered ${res.status}` : "the connection failed");
        for (const f of batch) { tally.refused++; line(report, "refused", `${f.name}: not imported, ${why}`); }
        continue;
      }
      for (const o of res.body.imported) {
        tally.imported++;
        const note = o.caption && o.caption !== "read" ? ` (${o.caption})` : "";
        if (o.ambiguous_boxes || note.includes("could be 0..1000 or pixels")) tally.undecided++;
        const flags = importFlags(o, res.body.resolution, res.body.smallest_bucket);
        line(report, flags.length ? "imported flagged" : "imported",
          `${o.filename}: imported${o.sidecar ? ` with its .${o.sidecar} caption${note}` : ""}` +
          flags.map((f) => ` · ${f}`).join(""));
      }
      for (const o of res.body.duplicates) { tally.duplicates++; line(report, "duplicate", `${o.filename}: not stored twice (${o.reason})`); }
      for (const o of res.body.refused) { tally.refused++; line(report, "refused", `${o.filename}: refused, ${o.reason}`); }
      tally.near += res.body.near_duplicates.length;
    }
    bar.value = 100;
    root.classList.remove("busy");
    status.textContent = `Done: ${tally.imported} imported, ${tally.duplicates} duplicate, ${tally.refused} refused` +
      (tally.near ? `, ${tally.near} near-duplicate pair(s) flagged` : "") + "." +
      (tally.undecided ? ` The boxes of ${tally.undecided} caption file(s) could be 0..1000 or pixels: open the dataset to choose; until then the export refuses them.` : "");
    if (historyLink) {
      historyLink.href = `${root.dataset.historyUrl}?upload=${encodeURIComponent(uploadId)}`;
      historyLink.hidden = false;
    }
    if (window.htmx) window.htmx.trigger(document.body, "imagesImported");
  }

  function attach(root) {
    if (root.dataset.uploadReady) return;
    root.dataset.uploadReady = "1";
    const zone = root.querySelector("[data-dropzone]");
    const input = root.querySelector("[data-file-input]");
    zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", async (e) => {
      e.preventDefault();
      zone.classList.remove("over");
      upload(root, await droppedFiles(e.dataTransfer));
    });
    input.addEventListener("change", () => { upload(root, [...input.files]); input.value = ""; });
  }

  function init(scope) { scope.querySelectorAll("[data-upload]").forEach(attach); }
  document.addEventListener("DOMContentLoaded", () => init(document));
  document.addEventListener("htmx:load", (e) => init(e.target));
})();
