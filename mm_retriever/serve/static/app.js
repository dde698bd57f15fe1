// mm-retriever search page: plain JS, no build step. Talks to the same HTTP API as any client.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const state = { legs: [], docs: [], queryImage: null, lastQuery: "", objectUrls: [] };

// ------------------------------------------------------------------ API
function authHeaders() {
  const key = localStorage.getItem("mmr-key");
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function api(path, options = {}) {
  const res = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  let body = null;
  const type = res.headers.get("content-type") || "";
  if (type.includes("application/json")) body = await res.json();
  if (!res.ok) {
    const detail = body && body.detail ? body.detail : `${res.status} ${res.statusText}`;
    throw new Error(detail);
  }
  return body;
}

// Images: a plain src when the server is open, a fetched blob when a key must be sent.
async function setImage(img, url) {
  if (!url) return;
  img.dataset.src = url;
  if (!localStorage.getItem("mmr-key")) {
    img.src = url;
    return;
  }
  const res = await fetch(url, { headers: authHeaders() });
  if (!res.ok || img.dataset.src !== url) return;
  const objectUrl = URL.createObjectURL(await res.blob());
  state.objectUrls.push(objectUrl);
  img.src = objectUrl;
}

function withWidth(url, width) {
  return url + (url.includes("?") ? "&" : "?") + `max_width=${width}`;
}

// ------------------------------------------------------------------ status
function setStatus(text, isError = false) {
  const el = $("#status");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

// ------------------------------------------------------------------ legs
async function loadHealth() {
  const health = await api("/healthz");
  state.legs = health.legs;
  const box = $("#legs");
  box.replaceChildren(
    ...health.legs.map((leg) => {
      const label = document.createElement("label");
      label.innerHTML = `<input type="checkbox" checked value="${leg}"> ${leg}`;
      return label;
    })
  );
}

function selectedLegs() {
  const all = [...document.querySelectorAll("#legs input")];
  const on = all.filter((i) => i.checked).map((i) => i.value);
  return on.length === all.length ? null : on;
}

// ------------------------------------------------------------------ documents
async function loadDocs() {
  const docs = await api("/documents");
  const chosen = new Set(selectedDocs());
  state.docs = docs;
  $("#doc-count").textContent = `${docs.length} · ${docs.reduce((n, d) => n + d.n_pages, 0)} pages`;
  const list = $("#docs");
  list.replaceChildren(
    ...docs.map((d) => {
      const li = document.createElement("li");
      li.className = "doc-row";
      li.dataset.docId = d.doc_id;
      const check = document.createElement("input");
      check.type = "checkbox";
      check.value = d.doc_id;
      check.checked = chosen.has(d.doc_id);
      check.title = "Search only the ticked documents";
      const info = document.createElement("div");
      info.innerHTML = `<div class="doc-name"></div><div class="doc-meta"></div>`;
      $(".doc-name", info).textContent = d.name;
      $(".doc-name", info).title = d.title || d.name;
      $(".doc-meta", info).textContent = `${d.n_pages} page${d.n_pages === 1 ? "" : "s"} · ${d.doc_id}`;
      const del = document.createElement("button");
      del.className = "doc-delete";
      del.title = `Delete ${d.name}`;
      del.innerHTML = `<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M4 7h16M10 11v6M14 11v6M6 7l1 12a2 2 0 0 0 2 2h6a2 2 0 0 0 2-2l1-12M9 7V4h6v3"/></svg>`;
      del.addEventListener("click", () => deleteDoc(d));
      li.append(check, info, del);
      return li;
    })
  );
  if (!docs.length) list.innerHTML = `<li class="muted">No documents yet. Upload a PDF.</li>`;
}

function selectedDocs() {
  return [...document.querySelectorAll("#docs input:checked")].map((i) => i.value);
}

async function deleteDoc(doc) {
  if (!confirm(`Delete ${doc.name} from the index?`)) return;
  try {
    const job = await api(`/documents/${encodeURIComponent(doc.doc_id)}`, { method: "DELETE" });
    // its pages leave the results now (their images would no longer load)
    document.querySelectorAll(".result").forEach((r) => {
      if (r.dataset.docId === doc.doc_id) r.remove();
    });
    const row = jobRow(`Deleting ${doc.name}`);
    await followJob(job.job_id, row);
    await loadDocs();
  } catch (err) {
    setStatus(`Could not delete ${doc.name}: ${err.message}`, true);
  }
}

// ------------------------------------------------------------------ upload + jobs
function jobRow(label) {
  const row = document.createElement("div");
  row.className = "job";
  row.innerHTML = `<div class="job-label"></div><div class="bar"><i></i></div>`;
  $(".job-label", row).textContent = label;
  $("#jobs").prepend(row);
  return row;
}

function updateJobRow(row, label, fraction, cls) {
  $(".job-label", row).textContent = label;
  $(".bar > i", row).style.width = `${Math.round(Math.max(0, Math.min(1, fraction)) * 100)}%`;
  row.classList.remove("done", "failed");
  if (cls) row.classList.add(cls);
}

function upload(files) {
  files = [...files].filter((f) => f.size > 0);
  if (!files.length) return;
  const names = files.map((f) => f.name).join(", ");
  const row = jobRow(`Uploading ${names}`);
  const form = new FormData();
  files.forEach((f) => form.append("files", f, f.name));
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/documents");
  Object.entries(authHeaders()).forEach(([k, v]) => xhr.setRequestHeader(k, v));
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) updateJobRow(row, `Uploading ${names}`, (0.3 * e.loaded) / e.total);
  };
  xhr.onload = async () => {
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
    if (xhr.status !== 202) {
      updateJobRow(row, `${names}: ${body.detail || xhr.statusText}`, 1, "failed");
      return;
    }
    await followJob(body.job_id, row);
    await loadDocs();
  };
  xhr.onerror = () => updateJobRow(row, `${names}: upload failed`, 1, "failed");
  xhr.send(form);
}

async function followJob(jobId, row) {
  for (;;) {
    const job = await api(`/jobs/${jobId}`);
    const what = job.kind === "add" ? `Indexing ${job.files.join(", ")}` : `Deleting ${job.doc_id}`;
    if (job.status === "done" || job.status === "failed") {
      const failed = job.failed.map((f) => `${f.file}: ${f.reason}`).join("; ");
      if (job.status === "failed" || failed) {
        updateJobRow(row, `${what}: ${job.error || failed}`, 1, "failed");
      } else {
        const msg = job.kind === "add"
          ? `Indexed ${job.added.length} file(s), ${job.pages} page(s)` +
            (job.unchanged.length ? `; ${job.unchanged.length} already indexed` : "")
          : `Deleted ${job.doc_id}`;
        updateJobRow(row, msg, 1, "done");
        setTimeout(() => row.remove(), 8000);
      }
      return job;
    }
    const label = job.status === "queued" ? `${what} (waiting)` : `${what} (${job.done}/${job.total})`;
    updateJobRow(row, label, 0.3 + 0.7 * (job.progress || 0.05));
    await new Promise((r) => setTimeout(r, 400));
  }
}

// ------------------------------------------------------------------ search
async function search(event) {
  if (event) event.preventDefault();
  const query = $("#q").value.trim();
  if (!query && !state.queryImage) {
    setStatus("Type a question or drop an image.");
    return;
  }
  const body = { query: query || null, k: Number($("#k").value) };
  if (state.queryImage) body.image = state.queryImage;
  const legs = selectedLegs();
  if (legs) body.legs = legs;
  const docs = selectedDocs();
  if (docs.length) body.filters = { doc_id: docs };
  const button = $("#search-btn");
  button.disabled = true;
  setStatus("Searching…");
  const t0 = performance.now();
  try {
    const pages = await api("/search", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    state.lastQuery = query;
    const ms = Math.round(performance.now() - t0);
    const scope = docs.length ? ` in ${docs.length} document(s)` : "";
    setStatus(pages.length ? `${pages.length} page(s)${scope} · ${ms} ms` : `No pages matched${scope}.`);
    renderResults(pages, query);
    $("#results").dataset.query = query;
  } catch (err) {
    setStatus(err.message, true);
  } finally {
    button.disabled = false;
  }
}

function highlight(text, query) {
  const escape = (s) => s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
  const stop = new Set(["the", "and", "for", "what", "which", "how", "did", "was", "were", "are", "with", "from", "that", "this", "between", "most", "much", "many"]);
  const words = [...new Set((query.toLowerCase().match(/[\p{L}\p{N}]{3,}/gu) || []).filter((w) => !stop.has(w)))];
  let html = escape(text);
  if (!words.length) return html;
  const stems = words.map((w) => w.replace(/(ing|ed|es|s)$/u, "")).filter((w) => w.length >= 3);
  const re = new RegExp(`\\b(${stems.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|")})[\\p{L}\\p{N}]*`, "giu");
  return html.replace(re, "<mark>$&</mark>");
}

function renderResults(pages, query) {
  state.objectUrls.forEach((u) => URL.revokeObjectURL(u));
  state.objectUrls = [];
  const list = $("#results");
  const tpl = $("#result-tpl");
  const overlayAll = $("#overlay-all").checked;
  list.replaceChildren(
    ...pages.map((page, i) => {
      const li = tpl.content.firstElementChild.cloneNode(true);
      li.dataset.docId = page.doc_id;
      li.dataset.pageIndex = page.page_index;
      $(".rank", li).textContent = `#${i + 1}`;
      $(".citation", li).textContent = page.citation;
      $(".score", li).textContent = page.score.toFixed(4);
      $(".doc-title", li).textContent = page.title || "";
      const legs = Object.keys(page.leg_ranks).sort((a, b) => page.leg_ranks[a] - page.leg_ranks[b]);
      $(".leg-chips", li).replaceChildren(
        ...legs.map((leg) => {
          const chip = document.createElement("span");
          chip.className = "chip" + (page.leg_ranks[leg] === 1 ? " top" : "");
          const score = page.leg_scores[leg];
          chip.innerHTML = `<b></b> #${page.leg_ranks[leg]} · ${score === undefined ? "" : score.toFixed(3)}`;
          $("b", chip).textContent = leg;
          chip.title = `${leg} leg: rank ${page.leg_ranks[leg]}, score ${score}`;
          return chip;
        })
      );
      $(".snippet", li).innerHTML = highlight((page.matched_text || page.text || "").trim().slice(0, 700), query);
      $(".figures", li).replaceChildren(
        ...page.figures.map((fig) => {
          const f = document.createElement("figure");
          f.className = "figure";
          f.innerHTML = `<img alt="matched figure" loading="lazy"><figcaption></figcaption>`;
          $("figcaption", f).textContent = `${fig.caption || `figure ${fig.figure_index + 1}`} · ${fig.score.toFixed(3)}`;
          setImage($("img", f), fig.image_url);
          return f;
        })
      );
      const img = $(".page-img", li);
      const toggle = $(".overlay-toggle input", li);
      const show = () => setImage(img, toggle.checked && page.overlay_url ? withWidth(page.overlay_url, 700) : page.image_url);
      toggle.disabled = !page.overlay_url;
      toggle.checked = overlayAll && !!page.overlay_url;
      toggle.addEventListener("change", () => {
        li.classList.toggle("overlay-on", toggle.checked);
        show();
      });
      li.classList.toggle("overlay-on", toggle.checked);
      show();
      $(".open-image", li).href = page.image_url;
      if (page.explain_url) $(".open-explain", li).href = page.explain_url;
      else $(".open-explain", li).remove();
      const open = (e) => { e.preventDefault(); openViewer(page, toggle.checked || !!page.overlay_url); };
      $(".thumb", li).addEventListener("click", open);
      $(".citation", li).addEventListener("click", open);
      return li;
    })
  );
  if (!pages.length) list.innerHTML = `<li class="empty">Nothing matched. Try other words, or tick fewer legs.</li>`;
}

// ------------------------------------------------------------------ viewer
function openViewer(page, overlay) {
  const dialog = $("#viewer");
  $("#viewer-title").textContent = page.citation;
  $("#viewer-sub").textContent = page.title || "";
  const toggle = $("#viewer-overlay");
  toggle.checked = overlay && !!page.overlay_url;
  toggle.disabled = !page.overlay_url;
  const show = () => setImage($("#viewer-img"), toggle.checked ? withWidth(page.overlay_url, 1400) : page.image_url);
  toggle.onchange = show;
  show();
  dialog.showModal();
}

// ------------------------------------------------------------------ query image
function readImage(file) {
  if (!file || !/^image\/(png|jpeg)$/.test(file.type)) {
    setStatus("Query images must be PNG or JPEG.", true);
    return;
  }
  const reader = new FileReader();
  reader.onload = () => {
    state.queryImage = reader.result;
    $("#image-preview").src = reader.result;
    $("#image-chip").hidden = false;
  };
  reader.readAsDataURL(file);
}

function wireDrop(zone, onFiles) {
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("dragging"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("dragging");
    if (e.dataTransfer.files.length) onFiles(e.dataTransfer.files);
  });
}

// ------------------------------------------------------------------ start
function start() {
  $("#search-form").addEventListener("submit", search);
  $("#upload-input").addEventListener("change", (e) => { upload(e.target.files); e.target.value = ""; });
  wireDrop($("#upload"), upload);
  wireDrop($("#dropzone"), (files) => readImage(files[0]));
  $("#image-input").addEventListener("change", (e) => readImage(e.target.files[0]));
  $("#image-clear").addEventListener("click", () => {
    state.queryImage = null;
    $("#image-chip").hidden = true;
  });
  $("#viewer-close").addEventListener("click", () => $("#viewer").close());
  $("#viewer").addEventListener("click", (e) => { if (e.target.id === "viewer") $("#viewer").close(); });
  $("#key-btn").addEventListener("click", () => {
    $("#key-input").value = localStorage.getItem("mmr-key") || "";
    $("#key-dialog").showModal();
  });
  $("#key-dialog").addEventListener("close", () => {
    if ($("#key-dialog").returnValue !== "ok") return;
    const key = $("#key-input").value.trim();
    if (key) localStorage.setItem("mmr-key", key);
    else localStorage.removeItem("mmr-key");
    init();
  });
  $("#overlay-all").addEventListener("change", () => {
    document.querySelectorAll(".overlay-toggle input:not(:disabled)").forEach((t) => {
      t.checked = $("#overlay-all").checked;
      t.dispatchEvent(new Event("change"));
    });
  });
  const params = new URLSearchParams(location.search);
  init().then(() => {
    if (params.get("q")) {
      $("#q").value = params.get("q");
      search();
    }
  });
}

async function init() {
  try {
    await loadHealth();
    await loadDocs();
  } catch (err) {
    setStatus(`${err.message}${/key/.test(err.message) ? " — set the key with the key button" : ""}`, true);
  }
}

start();
