// Scene timeline: a proportional bar plus a list of scenes with captions; both seek on click.
// Watch hits lie on the same bar as ticks (spanning to their end once it is known); they seek too.

export function fmtTime(s) {
  if (s == null || !Number.isFinite(s)) return "–";
  const t = Math.round(Math.max(0, s) * 10) / 10; // one decimal when the time has one (video pts)
  const h = Math.floor(t / 3600), m = Math.floor((t % 3600) / 60);
  const tenth = Math.round(t * 10) % 10;
  const sec = String(Math.floor(t % 60)).padStart(2, "0") + (tenth ? `.${tenth}` : "");
  return h ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
}

/** Text from a model may carry control characters (random weights): keep it printable. */
export function cleanText(text) {
  return String(text ?? "").replace(/[\u0000-\u0008\u000b-\u001f\u007f\ufffd]/g, "");
}

/** One appearance of a watch: its id and start (the server's upsert key for `watch.hit`). */
export function hitKey(hit) {
  return `${hit.id}@${Number(hit.start)}`;
}

export class Timeline {
  constructor(bar, now, list, onSeek) {
    this.bar = bar;
    this.now = now;
    this.list = list;
    this.onSeek = onSeek;
    this.scenes = new Map(); // scene_id -> {start, end, caption}
    this.pts = 0;
    this.duration = 0;
    this.highlight = [];
    this.hits = new Map(); // `${watch id}@${start}` -> {id, text, start, end}
  }

  reset() {
    this.scenes.clear();
    this.hits.clear();
    this.pts = 0;
    this.duration = 0;
    this.render();
  }

  upsert(scene) {
    const prev = this.scenes.get(scene.scene_id) || {};
    this.scenes.set(scene.scene_id, { ...prev, ...Object.fromEntries(Object.entries(scene).filter(([, v]) => v != null)) });
    this.render();
  }

  /** A watch hit: one mark per appearance (watch id + start); the end update widens the same mark. */
  upsertHit(hit) {
    const key = hitKey(hit);
    const prev = this.hits.get(key) || {};
    this.hits.set(key, { ...prev, ...Object.fromEntries(Object.entries(hit).filter(([, v]) => v != null)) });
    this.render();
  }

  clearHits() {
    this.hits.clear();
    this.render();
  }

  /** A removed watch takes its hits with it (the server drops its kept hits too). */
  dropHits(watchId) {
    for (const [key, h] of this.hits) if (h.id === watchId) this.hits.delete(key);
    this.render();
  }

  setTime(pts, duration) {
    if (pts != null) this.pts = Math.max(this.pts, pts);
    if (duration && Number.isFinite(duration)) this.duration = duration;
    this.render();
  }

  showEvidence(spans) {
    this.highlight = spans || [];
    this.render();
  }

  render() {
    const sorted = [...this.scenes.entries()].sort((a, b) => a[1].start - b[1].start);
    const lastEnd = sorted.length ? sorted[sorted.length - 1][1].end ?? 0 : 0;
    const hitEnd = Math.max(0, ...[...this.hits.values()].map((h) => h.end ?? h.start));
    const total = Math.max(this.duration, this.pts, lastEnd, hitEnd, 1);
    const pct = (t) => `${(100 * Math.min(t, total)) / total}%`;

    this.bar.querySelectorAll(".seg, .watch-mark").forEach((el) => el.remove());
    for (const [id, s] of sorted) {
      const seg = document.createElement("button");
      seg.className = "seg";
      seg.style.left = pct(s.start);
      seg.style.width = `calc(${pct((s.end ?? this.pts) - s.start)} - 2px)`;
      seg.title = `scene ${id}: ${fmtTime(s.start)}–${fmtTime(s.end)}${s.caption ? "\n" + cleanText(s.caption) : ""}`;
      if (this.highlight.some((e) => e.start < (s.end ?? Infinity) && e.end > s.start)) seg.classList.add("hit");
      seg.onclick = () => this.onSeek(s.start);
      this.bar.appendChild(seg);
    }
    if (this.pts > lastEnd) {
      const open = document.createElement("div");
      open.className = "seg open";
      open.style.left = pct(lastEnd);
      open.style.width = pct(this.pts - lastEnd);
      open.title = "current scene (still open)";
      this.bar.appendChild(open);
    }
    for (const [key, h] of [...this.hits.entries()].sort((a, b) => a[1].start - b[1].start)) {
      const mark = document.createElement("button");
      mark.className = h.end == null ? "watch-mark open" : "watch-mark";
      mark.dataset.hit = key;
      mark.dataset.watch = h.id;
      mark.dataset.start = String(h.start);
      if (h.end != null) mark.dataset.end = String(h.end);
      mark.style.left = pct(h.start);
      if (h.end != null) mark.style.width = pct(h.end - h.start);
      mark.title = `${cleanText(h.text)}: ${fmtTime(h.start)}${h.end != null ? `–${fmtTime(h.end)}` : " (still on screen)"}`;
      mark.onclick = () => this.onSeek(h.start, h);
      this.bar.appendChild(mark);
    }
    this.now.style.left = pct(this.pts);

    this.list.replaceChildren();
    if (!sorted.length) {
      const li = document.createElement("li");
      li.className = "empty";
      li.textContent = "Scenes appear here as they close.";
      this.list.appendChild(li);
      return;
    }
    for (const [id, s] of sorted) {
      const li = document.createElement("li");
      li.dataset.scene = id;
      const span = document.createElement("span");
      span.className = "span";
      span.textContent = `${fmtTime(s.start)} – ${fmtTime(s.end)}`;
      const cap = document.createElement("span");
      const text = cleanText(s.caption).trim();
      cap.className = text ? "caption" : "caption pending";
      cap.textContent = text || (s.caption === undefined ? "captioning…" : "(no caption)");
      li.append(span, cap);
      li.onclick = () => this.onSeek(s.start);
      this.list.appendChild(li);
    }
  }
}
