// SceneKV demo page: wires the source picker, frame capture, timeline and Q&A to the WebSocket.

import { SceneKVClient, attachMessage } from "./client.js";
import { FrameCapture } from "./capture.js";
import { Timeline, fmtTime, cleanText } from "./timeline.js";
import { WatchPanel } from "./watches.js";

const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.search).get("token");
const withToken = (path) => (token ? `${path}?token=${encodeURIComponent(token)}` : path);
const wsUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${withToken("/ws")}`;

const ui = {
  video: $("video"), placeholder: $("player-placeholder"), start: $("start-btn"), stop: $("stop-btn"),
  ask: $("ask-btn"), answers: $("answers"), fps: $("fps"), carriers: $("carriers"), speed: $("speed"),
};
const state = { tab: "file", client: null, capture: null, objectUrl: null, webcam: null, qn: 0, live: false };
const answers = new Map(); // question id -> card elements
const timeline = new Timeline($("timeline"), $("timeline-now"), $("scene-list"), (t, hit) => (hit ? seekHit(hit) : seek(t)));
const watches = new WatchPanel({
  timeline,
  seek: (hit) => seekHit(hit),
  send: (msg) => (state.client?.isOpen && state.sid ? state.client.send(msg) : false),
});

// ---- page config: model banner, defaults, server media -------------------------------------------
async function loadConfig() {
  try {
    const cfg = await (await fetch(withToken("/config.json"))).json();
    showModel(cfg.model, cfg.random_weights, cfg.world_only);
    ui.fps.value = cfg.fps;
    if (![...ui.carriers.options].some((o) => o.value === cfg.carriers)) ui.carriers.add(new Option(cfg.carriers));
    ui.carriers.value = cfg.carriers;
    const list = $("media-list");
    for (const name of cfg.media || []) list.appendChild(new Option(`file:${name}`));
  } catch (err) {
    toast("config", `cannot load /config.json: ${err}`);
  }
}

function showModel(model, random, worldOnly) {
  $("model-pill").textContent = model || "model ?";
  $("model-pill").title = random ? `${model}: random weights` : worldOnly ? `${model}: synthetic world only` : model;
  $("random-banner").hidden = !(random || worldOnly);
  if (random) {
    $("random-banner-title").textContent = "Random weights.";
    $("random-banner-text").textContent =
      ` ${model} has random weights: the pipeline is real, but answers and captions are placeholders. ` +
      "Start the server with --model <checkpoint> for real answers.";
  } else if (worldOnly) {
    $("random-banner-title").textContent = "Synthetic world only.";
    $("random-banner-text").textContent =
      ` ${model} was trained only on SceneKV's synthetic world: it knows these colours and shapes and ` +
      "nothing else. Try file:sample.mp4, or start the server with --model <checkpoint> for real video.";
  }
}

// ---- tabs ---------------------------------------------------------------------------------------------
for (const tab of document.querySelectorAll(".tab")) {
  tab.onclick = () => {
    state.tab = tab.dataset.tab;
    document.querySelectorAll(".tab").forEach((t) => t.setAttribute("aria-selected", String(t === tab)));
    document.querySelectorAll(".tab-body").forEach((b) => (b.hidden = b.dataset.body !== state.tab));
  };
}

$("file-input").onchange = () => {
  const file = $("file-input").files[0];
  if (!file) return;
  if (state.objectUrl) URL.revokeObjectURL(state.objectUrl);
  state.objectUrl = URL.createObjectURL(file);
  ui.video.srcObject = null;
  ui.video.src = state.objectUrl;
  ui.placeholder.hidden = true;
  timeline.setTime(null, ui.video.duration);
};
ui.video.addEventListener("loadedmetadata", () => timeline.setTime(null, ui.video.duration));
ui.video.addEventListener("ended", () => {
  // The whole file is in: end the stream so its last scene closes and gets a caption.
  if (state.capture && state.tab === "file") endSession();
});

// ---- session ------------------------------------------------------------------------------------------
ui.start.onclick = () => startSession().catch((err) => toast("start", String(err.message || err)));
ui.stop.onclick = () => endSession();

async function startSession() {
  const fps = Number(ui.fps.value) || 1;
  let start;
  if (state.tab === "file") {
    if (!ui.video.src) throw new Error("choose a video file first");
    start = { type: "session.start", source: "push", fps, carriers: ui.carriers.value };
  } else if (state.tab === "url") {
    const url = $("url-input").value.trim();
    if (!url) throw new Error("enter a URL or file:NAME");
    start = { type: "session.start", source: url, fps, carriers: ui.carriers.value };
    const served = url.startsWith("file:") ? mediaUrl(url.slice(5)) : /^https?:/i.test(url) ? url : null;
    if (served) {
      // the server reads the file itself; the player shows the same file (HTTP Range from /media/)
      ui.video.srcObject = null;
      ui.video.src = served;
      ui.placeholder.hidden = true;
      ui.video.play().catch(() => {});
    }
  } else if (state.tab === "webcam") {
    state.webcam = await navigator.mediaDevices.getUserMedia({ video: { width: 640 }, audio: false });
    ui.video.src = "";
    ui.video.srcObject = state.webcam;
    ui.placeholder.hidden = true;
    start = { type: "session.start", source: "push", fps, carriers: ui.carriers.value };
  } else {
    const sid = $("attach-input").value.trim();
    if (!sid) throw new Error("enter a stream id");
    start = attachMessage(sid);
  }
  resetView();
  const client = await connect();
  client.onOpenSend = null;
  client.send(start);
  state.pendingPush = start.source === "push";
  ui.start.disabled = true;
}

async function connect() {
  if (state.client?.isOpen) return state.client;
  const client = new SceneKVClient(wsUrl);
  state.client = client;
  client.addEventListener("state", (e) => setConn(e.detail.state, e.detail.detail));
  client.addEventListener("session.started", (e) => onStarted(e.detail));
  client.addEventListener("ingest.progress", (e) => onProgress(e.detail));
  client.addEventListener("scene.closed", (e) => {
    timeline.upsert(e.detail);
    $("downloads").hidden = false; // captions exist once a scene has closed
  });
  client.addEventListener("answer.delta", (e) => onDelta(e.detail));
  client.addEventListener("answer.done", (e) => onDone(e.detail));
  client.addEventListener("session.ended", () => onEnded());
  client.addEventListener("search.result", (e) => onSearchResult(e.detail));
  client.addEventListener("watch.added", (e) => watches.added(e.detail));
  client.addEventListener("watch.removed", (e) => watches.removed(e.detail));
  client.addEventListener("watch.hit", (e) => watches.hit(e.detail));
  client.addEventListener("error", (e) => onError(e.detail));
  client.addEventListener("go_away", (e) =>
    notice(`Server is restarting (${Math.round(e.detail.time_left_ms / 1000)} s); this page will reconnect to the same stream.`));
  await client.connect();
  return client;
}

function mediaUrl(name) {
  return withToken(`/media/${name.split("/").map(encodeURIComponent).join("/")}`);
}

function offerDownloads(sid) {
  for (const fmt of ["vtt", "srt", "jsonl"]) {
    const link = $(`dl-${fmt}`);
    link.href = withToken(`/streams/${encodeURIComponent(sid)}/captions.${fmt}`);
    link.download = `${sid}.${fmt}`;
  }
}

function onStarted(msg) {
  $("stream-pill").hidden = false;
  $("stream-pill").textContent = msg.stream_id;
  state.sid = msg.stream_id;
  state.owner = msg.owner !== false;
  offerDownloads(msg.stream_id);
  showModel(msg.model, msg.random_weights, msg.world_only);
  ui.stop.disabled = false;
  ui.ask.disabled = false;
  watches.session(msg.stream_id, msg.owner !== false);
  notice("");
  const hit = state.pendingSeek;
  state.pendingSeek = null;
  if (hit?.stream_id === msg.stream_id) showHit(hit);
  if (state.capture || !state.pendingPush) return;
  // push sources: start playing and capturing
  const live = state.tab === "webcam";
  state.capture = new FrameCapture(ui.video, (pts, blob) => state.client.sendFrame(pts, blob), {
    fps: msg.fps || Number(ui.fps.value) || 1, live, buffered: () => state.client.buffered,
  });
  state.capture.start();
  if (!live) ui.video.playbackRate = Number(ui.speed.value) || 1;
  ui.video.play().catch((err) => toast("video", `cannot play: ${err.message}`));
}

function onProgress(p) {
  $("st-frames").textContent = p.frames ?? "–";
  $("st-pts").textContent = fmtTime(p.pts);
  $("st-lag").textContent = p.lag_s != null ? `${p.lag_s.toFixed(2)} s` : "–";
  $("st-mem").textContent = fmtBytes(p.memory_bytes);
  $("st-scenes").textContent = p.scenes ?? "–";
  $("st-status").textContent = p.status ?? "–";
  timeline.setTime(p.pts, ui.video.duration);
}

function endSession() {
  stopCapture();
  if (!state.owner) { // a viewer leaves; only the owner ends the stream
    state.client?.close();
    onEnded();
    $("st-status").textContent = "left";
    return;
  }
  if (state.client?.isOpen) state.client.send({ type: "session.end" });
  ui.stop.disabled = true;
}

function onEnded() {
  stopCapture();
  $("st-status").textContent = "ended";
  ui.stop.disabled = true;
  ui.start.disabled = false;
}

function stopCapture() {
  state.capture?.stop();
  state.capture = null;
  if (state.webcam) { state.webcam.getTracks().forEach((t) => t.stop()); state.webcam = null; }
}

function resetView() {
  stopCapture();
  if (state.client) { state.client.close(); state.client = null; }
  timeline.reset();
  watches.clear(null);
  $("downloads").hidden = true;
  ui.answers.replaceChildren();
  answers.clear();
  for (const id of ["st-frames", "st-pts", "st-lag", "st-mem", "st-scenes", "st-status"]) $(id).textContent = "–";
}

// ---- questions ----------------------------------------------------------------------------------------
$("ask-form").onsubmit = (ev) => {
  ev.preventDefault();
  const text = $("question").value.trim();
  if (!text || !state.client?.isOpen) return;
  const id = `q${++state.qn}`;
  const msg = { type: "question.ask", id, text };
  const anchor = parseAnchor($("anchor").value);
  if (anchor === undefined) return toast("anchor", "time anchor must be seconds or mm:ss");
  if (anchor !== null) msg.at = anchor;
  answerCard(id, text, anchor);
  state.client.send(msg);
  $("question").value = "";
};

function parseAnchor(value) {
  const v = value.trim().replace(/^at\s+/i, "");
  if (!v) return null;
  if (/^\d+(\.\d+)?$/.test(v)) return Number(v);
  if (/^(\d+:)?\d{1,2}:\d{2}(\.\d+)?$/.test(v)) return v.split(":").reduce((acc, x) => acc * 60 + Number(x), 0);
  return undefined;
}

function answerCard(id, question, anchor) {
  const card = document.createElement("article");
  card.className = "answer streaming";
  card.dataset.id = id;
  const q = document.createElement("div");
  q.className = "q";
  q.append(question);
  if (anchor !== null) {
    const a = document.createElement("span");
    a.className = "anchor";
    a.textContent = `@ ${fmtTime(anchor)}`;
    q.append(a);
  }
  const cancel = document.createElement("button");
  cancel.className = "cancel";
  cancel.textContent = "Cancel";
  cancel.onclick = () => state.client?.send({ type: "question.cancel", id });
  q.append(cancel);
  const text = document.createElement("div");
  text.className = "text";
  const foot = document.createElement("div");
  foot.className = "foot";
  card.append(q, text, foot);
  ui.answers.prepend(card);
  answers.set(id, { card, text, foot, cancel, raw: "" });
}

function onDelta(msg) {
  const a = answers.get(msg.id);
  if (!a) return;
  a.raw += msg.text;
  a.text.textContent = cleanText(a.raw);
}

function onDone(msg) {
  const a = answers.get(msg.id) || (answerCard(msg.id, "(question from another client)", null), answers.get(msg.id));
  a.card.classList.remove("streaming");
  a.cancel.remove();
  a.text.textContent = cleanText(msg.text) || "(empty answer)";
  a.foot.replaceChildren();
  if (msg.evidence?.length) {
    a.foot.append("evidence");
    for (const span of msg.evidence) {
      const chip = document.createElement("button");
      chip.className = "chip";
      chip.textContent = `${fmtTime(span.start)}–${fmtTime(span.end)}`;
      chip.title = "seek the video here";
      chip.onclick = () => { seek(span.start); timeline.showEvidence(msg.evidence); };
      a.foot.append(chip);
    }
  }
  const facts = [];
  if (msg.ttft_ms != null) facts.push(`first token ${Math.round(msg.ttft_ms)} ms`);
  if (msg.usage?.generated_tokens != null) facts.push(`${msg.usage.generated_tokens} tokens`);
  if (msg.finish_reason && msg.finish_reason !== "stop") facts.push(msg.finish_reason);
  const info = document.createElement("span");
  info.textContent = facts.join(" · ");
  a.foot.append(info);
  timeline.showEvidence(msg.evidence);
}

function onError(msg) {
  if (watches.owns(msg.id)) return watches.error(msg);
  const a = msg.id && answers.get(msg.id);
  if (a) {
    a.card.classList.remove("streaming");
    a.card.classList.add("error");
    a.cancel.remove();
    a.text.textContent = `${msg.code}: ${msg.message}`;
    return;
  }
  if (msg.code === "not_owner" && state.capture) { // this page lost the stream's key: stop sending
    stopCapture();
    return toast(msg.code, "this page does not hold the stream's key any more: capture stopped");
  }
  toast(msg.code, msg.message);
  if (msg.code === "not_owner" || msg.code === "too_many_streams") ui.start.disabled = false;
  if (msg.code === "bad_request" || msg.code === "forbidden_source" || msg.code === "unknown_stream") {
    ui.start.disabled = false;
  }
}

// ---- search across streams: a hit opens its stream (attach) at the hit's time -------------------------
$("search-form").onsubmit = async (ev) => {
  ev.preventDefault();
  const text = $("search-text").value.trim();
  if (!text) return;
  try {
    (await connect()).send({ type: "search", id: `search${++state.qn}`, text });
  } catch (err) {
    toast("search", String(err.message || err));
  }
};

function onSearchResult(msg) {
  const list = $("search-hits");
  list.replaceChildren();
  if (!msg.hits.length) list.append(Object.assign(document.createElement("li"), { textContent: "no match" }));
  for (const hit of msg.hits) {
    const li = document.createElement("li");
    const link = document.createElement("button");
    link.className = "chip";
    link.textContent = `${hit.stream_id} ${fmtTime(hit.start)}`;
    link.title = "open this stream here";
    link.onclick = () => openHit(hit);
    li.append(link, " ", cleanText(hit.caption || ""));
    list.append(li);
  }
}

function openHit(hit) {
  if (hit.stream_id === state.sid && state.client?.isOpen) return showHit(hit);
  document.querySelector('.tab[data-tab="attach"]').click();
  $("attach-input").value = hit.stream_id;
  state.pendingSeek = hit;
  startSession().catch((err) => toast("start", String(err.message || err)));
}

function showHit(hit) {
  timeline.showEvidence([{ start: hit.start, end: hit.end ?? hit.start }]);
  seek(hit.start);
  notice(`${hit.stream_id} at ${fmtTime(hit.start)}`);
}

function seekHit(hit) {
  timeline.showEvidence(hit.evidence?.length ? hit.evidence : [{ start: hit.start, end: hit.end ?? hit.start }]);
  seek(hit.start);
}

// ---- helpers ------------------------------------------------------------------------------------------
function seek(t) {
  if (ui.video.srcObject || !ui.video.src || !Number.isFinite(t)) return;
  ui.video.currentTime = t;
}

function fmtBytes(n) {
  if (n == null) return "–";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function setConn(st, detail) {
  const pill = $("conn-pill");
  pill.dataset.state = st;
  pill.textContent = st === "open" ? "connected" : st;
  pill.title = detail || "";
  if (st !== "open") watches.enable(false); // back on with the next session.started (the page re-attaches)
}

function notice(text) {
  $("notice").hidden = !text;
  $("notice").textContent = text;
}

function toast(code, message) {
  const el = document.createElement("div");
  el.className = "toast";
  const c = document.createElement("code");
  c.textContent = code;
  el.append(c, " ", message);
  $("toasts").append(el);
  setTimeout(() => el.remove(), 6000);
}

loadConfig();
