// memvos web app: plain JS, no build step, no external libraries. Every request is async
// (fetch / EventSource / Image), so the page never blocks on the server.
"use strict";

const $ = (id) => document.getElementById(id);
const S = {
  session: null,        // info of the open session (id, frames, width, height, names, stroke_radius)
  t: 0,                 // frame shown
  objects: [],          // object ids the server knows
  local: [],            // objects added on the page, not yet marked
  selected: 1,
  version: -1,          // masks version last drawn
  progress: { state: "idle", done: 0, total: 0 },
  events: null,
  drawing: null,        // the stroke being drawn: {kind, points}
  frameToken: 0,
  busy: false,          // an interaction request is in flight
  canUndo: false,
  canRedo: false,
};

// ---- helpers ---------------------------------------------------------------------------------
function paletteColour(i) {  // the DAVIS / PASCAL VOC palette, as the server's palette PNGs
  let r = 0, g = 0, b = 0;
  for (let bit = 0; bit < 8; bit++) {
    r |= ((i >> (3 * bit)) & 1) << (7 - bit);
    g |= ((i >> (3 * bit + 1)) & 1) << (7 - bit);
    b |= ((i >> (3 * bit + 2)) & 1) << (7 - bit);
  }
  return `rgb(${r}, ${g}, ${b})`;
}

function setStatus(text, isError = false) {
  const el = $("status");
  el.textContent = text || "";
  el.classList.toggle("error", !!isError);
}

async function api(method, url, body) {
  const options = { method, headers: {} };
  if (body instanceof FormData) options.body = body;
  else if (body !== undefined) { options.body = JSON.stringify(body); options.headers["Content-Type"] = "application/json"; }
  const response = await fetch(url, options);
  if (!response.ok) {
    let detail = `${response.status} ${response.statusText}`;
    try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new Error(detail);
  }
  return response;
}

async function apiJson(method, url, body) { return (await api(method, url, body)).json(); }

function sessionUrl(path) { return `/api/sessions/${encodeURIComponent(S.session.id)}${path}`; }

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error(`could not load ${url}`));
    image.src = url;
  });
}

// ---- file browser ------------------------------------------------------------------------------
async function browse(path) {
  try {
    const listing = await apiJson("GET", "/api/files" + (path ? `?path=${encodeURIComponent(path)}` : ""));
    if (!path && listing.entries.length === 1 && listing.entries[0].kind === "dir") {
      return browse(listing.entries[0].path);  // a single root: show what is in it
    }
    renderFiles(listing);
  } catch (err) { setStatus(err.message, true); }
}

function renderFiles(listing) {
  const crumbs = $("crumbs");
  crumbs.textContent = listing.path || "allowed folders";
  const list = $("files");
  list.replaceChildren();
  if (listing.path) list.append(fileItem("..", "up", () => browse(listing.parent)));
  for (const entry of listing.entries) {
    const label = entry.kind === "frames" ? `${entry.frames} frames` : entry.kind === "video" ? "video" : "folder";
    const item = fileItem(entry.name, label, () => entry.kind === "dir" ? browse(entry.path) : openVideo(entry.path));
    item.dataset.path = entry.path;
    item.dataset.kind = entry.kind;
    if (entry.kind === "frames") {  // a frame folder may also hold sub-folders: browse on double click
      item.title = "click: open as a video; double click: browse";
      item.addEventListener("dblclick", (e) => { e.preventDefault(); browse(entry.path); });
    }
    list.append(item);
  }
  if (!listing.entries.length) list.append(fileItem("(no videos or frame folders here)", "", null));
}

function fileItem(name, kind, onClick) {
  const li = document.createElement("li");
  const title = document.createElement("span");
  title.textContent = name;
  const note = document.createElement("span");
  note.className = "kind";
  note.textContent = kind;
  li.append(title, note);
  if (onClick) li.addEventListener("click", onClick);
  return li;
}

// ---- session -----------------------------------------------------------------------------------
async function openVideo(path) {
  setStatus("opening…");
  try {
    const info = await apiJson("POST", "/api/sessions", { path });
    if (S.session) api("DELETE", sessionUrl("")).catch(() => {});  // one session per page
    await startSession(info);
    setStatus(`opened ${info.name}`);
  } catch (err) { setStatus(err.message, true); }
}

async function resumeSession(id) {
  // Reopen a session the server still holds (after a reload, or from the list): nothing is lost.
  try {
    const info = await apiJson("GET", `/api/sessions/${encodeURIComponent(id)}`);
    await startSession(info);
    setStatus(`reopened ${info.name}`);
    return true;
  } catch (err) { setStatus(err.message, true); return false; }
}

async function startSession(info) {
  if (S.events) S.events.close();
  S.session = info;
  S.t = 0; S.version = -1; S.local = []; S.objects = [];
  history.replaceState(null, "", `#session=${encodeURIComponent(info.id)}`);
  $("video-name").textContent = `${info.name} — ${info.frames} frames, ${info.width}×${info.height}`;
  setupStage(info);
  const slider = $("slider");
  slider.max = String(info.frames - 1);
  slider.value = "0";
  applyStatus(info);
  if (!S.objects.length) { S.local = [1]; S.selected = 1; renderObjects(); }
  connectEvents();
  const first = info.annotated && info.annotated.length ? info.annotated[info.annotated.length - 1] : 0;
  await showFrame(first);
  listSessions();
}

async function listSessions() {
  try {
    const sessions = await apiJson("GET", "/api/sessions");
    const list = $("sessions");
    list.replaceChildren();
    for (const s of sessions) {
      const current = S.session && s.id === S.session.id;
      const item = fileItem(s.name || s.path, current ? "open here" : s.state, current ? null : () => resumeSession(s.id));
      item.dataset.session = s.id;
      list.append(item);
    }
    $("open-sessions").hidden = !sessions.length;
  } catch (err) { /* the list is a convenience */ }
}

function setupStage(info) {
  for (const id of ["frame-canvas", "overlay-canvas", "marks-canvas", "draw-canvas"]) {
    const canvas = $(id);
    canvas.width = info.width;
    canvas.height = info.height;
  }
  $("stage").hidden = false;
  $("placeholder").hidden = true;
  fitStage();
}

function fitStage() {
  if (!S.session) return;
  const wrap = $("stage-wrap");
  const scale = Math.min(wrap.clientWidth / S.session.width, wrap.clientHeight / S.session.height);
  const stage = $("stage");
  stage.style.width = `${Math.max(1, Math.floor(S.session.width * scale))}px`;
  stage.style.height = `${Math.max(1, Math.floor(S.session.height * scale))}px`;
}

function connectEvents() {
  // The open stream tells the server this page is alive: closing the tab cancels its propagation.
  const source = new EventSource(sessionUrl("/events"));
  source.addEventListener("status", (e) => applyStatus(JSON.parse(e.data)));
  source.onerror = () => { if (source.readyState === EventSource.CLOSED) setStatus("lost the server", true); };
  S.events = source;
}

function applyStatus(status) {
  S.objects = status.objects;
  S.canUndo = !!status.can_undo;
  S.canRedo = !!status.can_redo;
  S.local = S.local.filter((id) => !S.objects.includes(id));
  if (!S.objects.includes(S.selected) && !S.local.includes(S.selected)) {
    const all = allObjects();
    S.selected = all.length ? all[0] : 0;
  }
  renderObjects();
  renderMarks(status.annotated);
  renderProgress(status.progress);
  if (status.version !== S.version) {
    S.version = status.version;
    refreshOverlay();
    refreshMarks();
  }
  updateButtons();
}

function allObjects() { return [...new Set([...S.objects, ...S.local])].sort((a, b) => a - b); }

function renderObjects() {
  const list = $("objects");
  list.replaceChildren();
  for (const id of allObjects()) {
    const li = document.createElement("li");
    li.dataset.id = String(id);
    li.classList.toggle("selected", id === S.selected);
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = paletteColour(id);
    const name = document.createElement("span");
    name.textContent = `object ${id}`;
    li.append(swatch, name);
    if (!S.objects.includes(id)) {
      const note = document.createElement("span");
      note.className = "note";
      note.textContent = "not marked yet";
      li.append(note);
    }
    li.addEventListener("click", () => { S.selected = id; renderObjects(); updateButtons(); });
    list.append(li);
  }
}

function renderMarks(annotated) {
  const marks = $("marks");
  marks.replaceChildren();
  const n = S.session ? S.session.frames : 1;
  for (const t of annotated || []) {
    const mark = document.createElement("span");
    mark.style.left = n > 1 ? `${(100 * t) / (n - 1)}%` : "0";
    mark.title = `annotated: frame ${t}`;
    marks.append(mark);
  }
}

function renderProgress(progress) {
  const was = S.progress.state;
  S.progress = progress;
  if (was === "running" && progress.state !== "running") {
    setStatus({ finished: "propagation finished: scrub to check, correct any frame and propagate again",
      cancelled: progress.reason === "user" ? "propagation cancelled (undo reverts the round)" : "propagation stopped",
      error: `propagation failed: ${progress.error}` }[progress.state] || "", progress.state === "error");
  }
  const bar = $("progress");
  bar.max = Math.max(progress.total, 1);
  bar.value = progress.state === "finished" ? bar.max : progress.done;
  const text = $("progress-text");
  text.dataset.state = progress.state;
  text.dataset.done = String(progress.done);
  text.dataset.run = String(progress.run);
  const secs = progress.seconds ? ` in ${progress.seconds.toFixed(1)} s` : "";
  text.textContent = {
    idle: "",
    running: progress.total ? `propagating… ${progress.done}/${progress.total}` : "propagating…",
    finished: `propagated ${progress.total} frames${secs}`,
    cancelled: `cancelled at ${progress.done}/${progress.total}`,
    error: `propagation failed: ${progress.error}`,
  }[progress.state] || progress.state;
}

function running() { return S.progress.state === "running"; }

function updateButtons() {
  const open = !!S.session;
  const idle = open && !running();
  $("propagate").disabled = !idle || !S.objects.length;
  $("cancel").disabled = !open || !running();
  $("undo").disabled = !idle || !S.canUndo;
  $("redo").disabled = !idle || !S.canRedo;
  $("export").disabled = !idle;
  $("add-object").disabled = !open;
  $("remove-object").disabled = !idle || !S.selected;
  $("mask-file").disabled = !idle;
  for (const id of ["slider", "prev", "next"]) $(id).disabled = !open;
}

// ---- frames ------------------------------------------------------------------------------------
async function showFrame(t) {
  if (!S.session) return;
  t = Math.max(0, Math.min(S.session.frames - 1, t));
  S.t = t;
  $("slider").value = String(t);
  $("frame-label").textContent = `frame ${t + 1} / ${S.session.frames}`;
  clearDrawing();
  const token = ++S.frameToken;
  const overlay = refreshOverlay();
  refreshMarks();
  try {
    const image = await loadImage(sessionUrl(`/frames/${t}.jpg`));
    if (token !== S.frameToken) return;  // the user moved on: drop the stale frame
    $("frame-canvas").getContext("2d").drawImage(image, 0, 0);
  } catch (err) { setStatus(err.message, true); }
  await overlay;
}

function refreshOverlay() {
  return drawLayer("overlay-canvas", "overlays");  // the masks
}

function refreshMarks() {
  return drawLayer("marks-canvas", "marks");  // the open round's strokes and clicks, until it is propagated
}

async function drawLayer(canvasId, kind) {
  // Draw the server's RGBA layer of the frame shown; a newer request for the same layer wins.
  if (!S.session) return;
  const t = S.t;
  S.tokens = S.tokens || {};
  const token = (S.tokens[canvasId] = (S.tokens[canvasId] || 0) + 1);
  try {
    const image = await loadImage(sessionUrl(`/${kind}/${t}.png?v=${S.version}`));
    if (token !== S.tokens[canvasId] || t !== S.t) return;
    const canvas = $(canvasId);
    const context = canvas.getContext("2d");
    context.clearRect(0, 0, canvas.width, canvas.height);
    context.drawImage(image, 0, 0);
    canvas.dataset.frame = String(t);
    canvas.dataset.version = String(S.version);
  } catch (err) { /* a newer request replaces it */ }
}

// ---- drawing -----------------------------------------------------------------------------------
function tool() { return document.querySelector("input[name=tool]:checked").value; }

function framePoint(event) {
  const canvas = $("draw-canvas");
  const rect = canvas.getBoundingClientRect();
  const x = ((event.clientX - rect.left) * canvas.width) / rect.width;
  const y = ((event.clientY - rect.top) * canvas.height) / rect.height;
  return [Math.max(0, Math.min(canvas.width - 1, x)), Math.max(0, Math.min(canvas.height - 1, y))];
}

function canEdit() {
  if (!S.session || running()) { setStatus(running() ? "wait for the propagation or cancel it" : "", running()); return false; }
  if (!S.selected) { setStatus("add an object first", true); return false; }
  return true;
}

function onPointerDown(event) {
  if (event.button !== 0 || !canEdit()) return;
  const point = framePoint(event);
  if (tool() === "click") {
    drawDot(point, !event.shiftKey);
    send({ clicks: [[point[0], point[1], event.shiftKey ? 0 : 1]] });
    return;
  }
  $("draw-canvas").setPointerCapture(event.pointerId);
  S.drawing = { kind: tool(), points: [point] };
  drawStroke();
}

function onPointerMove(event) {
  if (!S.drawing) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const e of events.length ? events : [event]) S.drawing.points.push(framePoint(e));
  drawStroke();
}

function onPointerUp() {
  if (!S.drawing) return;
  const { kind, points } = S.drawing;
  S.drawing = null;
  send({ [kind]: [points.map(([x, y]) => [Math.round(x * 10) / 10, Math.round(y * 10) / 10])] });
}

function strokeStyle(positive) { return positive ? "rgba(60, 255, 120, 0.9)" : "rgba(255, 70, 70, 0.9)"; }

function drawStroke() {
  const context = $("draw-canvas").getContext("2d");
  const { kind, points } = S.drawing;
  context.clearRect(0, 0, context.canvas.width, context.canvas.height);
  context.strokeStyle = strokeStyle(kind === "positive");
  context.lineWidth = 2 * (S.session.stroke_radius || 2) + 1;
  context.lineCap = "round";
  context.lineJoin = "round";
  context.beginPath();
  points.forEach(([x, y], i) => (i ? context.lineTo(x, y) : context.moveTo(x, y)));
  if (points.length === 1) context.lineTo(points[0][0] + 0.1, points[0][1]);
  context.stroke();
}

function drawDot([x, y], positive) {
  const context = $("draw-canvas").getContext("2d");
  context.fillStyle = strokeStyle(positive);
  context.beginPath();
  context.arc(x, y, 2 * (S.session.stroke_radius || 2) + 1, 0, 2 * Math.PI);
  context.fill();
}

function clearDrawing() {
  const canvas = $("draw-canvas");
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
}

function send(inputs) {
  // Interactions go to the server one after another, in the order made: a quick second click
  // waits for the first instead of being lost. Frame and object are those at the click.
  const frame = S.t, object = S.selected;
  S.pending = (S.pending || Promise.resolve()).then(() => sendNow(frame, object, inputs));
  return S.pending;
}

async function sendNow(frame, object, inputs) {
  S.busy = true;
  setStatus("segmenting…");
  try {
    const status = await apiJson("POST", sessionUrl("/interact"), { frame, object_id: object, ...inputs });
    applyStatus(status);
    await refreshOverlay();
    setStatus(`object ${object} updated on frame ${frame + 1}; propagate to spread it`);
  } catch (err) { setStatus(err.message, true); }
  finally { S.busy = false; if (!S.drawing) clearDrawing(); }
}

async function uploadMask(file) {
  if (!file || !canEdit()) return;
  const form = new FormData();
  const frame = S.t;
  form.append("frame", String(frame));
  if (!$("mask-keep-ids").checked) form.append("object_id", String(S.selected));
  form.append("file", file, file.name);
  setStatus("applying the mask…");
  try {
    applyStatus(await apiJson("POST", sessionUrl("/mask"), form));
    await refreshOverlay();
    setStatus(`mask ${file.name} applied to frame ${frame + 1}`);
  } catch (err) { setStatus(err.message, true); }
  finally { $("mask-file").value = ""; }
}

// ---- objects and jobs ----------------------------------------------------------------------------
function addObject() {
  const all = allObjects();
  const next = all.length ? Math.max(...all) + 1 : 1;
  if (next > 254) { setStatus("at most 254 objects", true); return; }
  S.local.push(next);
  S.selected = next;
  renderObjects();
  updateButtons();
}

async function removeObject() {
  const id = S.selected;
  if (!id) return;
  if (!S.objects.includes(id)) {  // never marked: only the page knew it
    S.local = S.local.filter((o) => o !== id);
    S.selected = allObjects()[0] || 0;
    renderObjects();
    updateButtons();
    return;
  }
  try {
    applyStatus(await apiJson("DELETE", sessionUrl(`/objects/${id}`)));
    setStatus(`removed object ${id} (undo brings it back)`);
  } catch (err) { setStatus(err.message, true); }
}

async function propagate() {
  try {
    applyStatus(await apiJson("POST", sessionUrl("/propagate")));
    setStatus("propagating… (you can scrub meanwhile)");
  } catch (err) { setStatus(err.message, true); }
}

async function cancel() {
  try { applyStatus(await apiJson("POST", sessionUrl("/cancel"))); setStatus("cancelling…"); }
  catch (err) { setStatus(err.message, true); }
}

async function undo() {
  try {
    const status = await apiJson("POST", sessionUrl("/undo"));
    applyStatus(status);
    setStatus(status.undone ? "undone (redo: Ctrl+Shift+Z)" : "nothing to undo");
  } catch (err) { setStatus(err.message, true); }
}

async function redo() {
  try {
    const status = await apiJson("POST", sessionUrl("/redo"));
    applyStatus(status);
    setStatus(status.redone ? "redone" : "nothing to redo");
  } catch (err) { setStatus(err.message, true); }
}

async function exportZip() {
  const kinds = [...document.querySelectorAll("input[name=kind]:checked")].map((c) => c.value);
  if (!kinds.length) { setStatus("choose what to export", true); return; }
  $("export").disabled = true;
  setStatus("exporting…");
  try {
    const response = await api("GET", sessionUrl(`/export.zip?kinds=${kinds.join(",")}`));
    const blob = await response.blob();
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = `${S.session.name.replace(/\.[^.]+$/, "")}-memvos.zip`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60000);
    setStatus(`exported ${kinds.join(", ")}`);
  } catch (err) { setStatus(err.message, true); }
  finally { updateButtons(); }
}

// ---- wiring ------------------------------------------------------------------------------------
function wire() {
  const draw = $("draw-canvas");
  draw.addEventListener("pointerdown", onPointerDown);
  draw.addEventListener("pointermove", onPointerMove);
  draw.addEventListener("pointerup", onPointerUp);
  draw.addEventListener("pointercancel", () => { S.drawing = null; clearDrawing(); });
  $("slider").addEventListener("input", (e) => showFrame(Number(e.target.value)));
  $("prev").addEventListener("click", () => showFrame(S.t - 1));
  $("next").addEventListener("click", () => showFrame(S.t + 1));
  $("propagate").addEventListener("click", propagate);
  $("cancel").addEventListener("click", cancel);
  $("undo").addEventListener("click", undo);
  $("redo").addEventListener("click", redo);
  $("export").addEventListener("click", exportZip);
  $("add-object").addEventListener("click", addObject);
  $("remove-object").addEventListener("click", removeObject);
  $("mask-file").addEventListener("change", (e) => uploadMask(e.target.files[0]));
  $("show-overlay").addEventListener("change", (e) => $("stage").classList.toggle("hide-overlay", !e.target.checked));
  window.addEventListener("resize", fitStage);
  document.addEventListener("keydown", (e) => {
    if (!S.session || e.target.tagName === "INPUT") return;  // sliders and radios take arrows themselves
    if (e.key === "ArrowLeft") { e.preventDefault(); showFrame(S.t - 1); }
    else if (e.key === "ArrowRight") { e.preventDefault(); showFrame(S.t + 1); }
    else if ((e.ctrlKey || e.metaKey) && (e.key === "y" || (e.shiftKey && e.key.toLowerCase() === "z"))) {
      e.preventDefault(); if (!$("redo").disabled) redo();
    } else if ((e.ctrlKey || e.metaKey) && e.key === "z") { e.preventDefault(); if (!$("undo").disabled) undo(); }
  });
  updateButtons();
  browse(null);
  const saved = new URLSearchParams(location.hash.slice(1)).get("session");
  if (saved) resumeSession(saved).then((ok) => { if (!ok) history.replaceState(null, "", location.pathname); });
  listSessions();
}

document.addEventListener("DOMContentLoaded", wire);
