// The "Watch for" box: the stream's watches (standing questions), their hits on the timeline and one
// notice per appearance. The server tells every client on the stream of each watch and hit, and re-tells
// them all when a client attaches, so everything here is an upsert: watches by id, hits by id + start.

import { fmtTime, cleanText, hitKey } from "./timeline.js";

const $ = (id) => document.getElementById(id);

export class WatchPanel {
  /** timeline: the page's Timeline; seek(hit): show a hit in the player; send(msg): false when there is
   * no open session to send it on. */
  constructor({ timeline, seek, send }) {
    this.timeline = timeline;
    this.seek = seek;
    this.send = send;
    this.list = new Map(); // id -> {id, text, cooldown_s, webhook, li, count}
    this.mine = new Set(); // this page's watch.add ids: their errors show here
    this.hits = new Map(); // `id@start` -> its notice line and fields
    this.announced = new Set(); // appearances already announced (kept across a re-attach)
    this.sid = null;
    this.n = 0;
    $("watch-form").onsubmit = (ev) => {
      ev.preventDefault();
      this.add($("watch-text").value.trim());
    };
  }

  add(text) {
    if (!text) return;
    // ids are kept with the stream (reloads and other clients too): make them unlikely to meet
    const id = `w${Date.now().toString(36)}${(++this.n).toString(36)}${Math.random().toString(36).slice(2, 6)}`;
    this.mine.add(id);
    this.error(null);
    if (!this.send({ type: "watch.add", id, text })) {
      this.mine.delete(id);
      return this.error({ code: "no_session", message: "start or attach a stream first" });
    }
    $("watch-text").value = "";
  }

  enable(on) {
    $("watch-text").disabled = !on;
    $("watch-btn").disabled = !on;
  }

  /** session.started: a new stream clears the watches; the same one again (a reconnect) is re-told them
   * all, with their kept hits, so the list is rebuilt from that replay while its notices stay announced.
   * Only the stream's owner (this browser started it) adds and removes watches; others see them. */
  session(sid, owner = true) {
    this.clear(sid === this.sid ? this.announced : null);
    this.sid = sid;
    this.owner = owner;
    this.enable(owner);
  }

  clear(announced) {
    this.list.clear();
    this.hits.clear();
    this.announced = announced || new Set();
    if (!announced) {
      this.mine.clear();
      this.sid = null;
    }
    this.timeline.clearHits();
    $("watch-list").replaceChildren();
    $("watch-hits").replaceChildren();
    this.error(null);
    this.enable(false);
  }

  /** Whether an error with this id is about a watch (it shows next to the box, not as a notice). */
  owns(id) {
    return Boolean(id) && (this.mine.has(id) || this.list.has(id));
  }

  added(msg) {
    const prev = this.list.get(msg.id);
    const li = prev?.li || document.createElement("li");
    li.dataset.watch = msg.id;
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = cleanText(msg.text);
    const extra = [];
    if (msg.cooldown_s) extra.push(`cooldown ${msg.cooldown_s} s`);
    if (msg.webhook) extra.push("webhook");
    const info = document.createElement("span");
    info.className = "info";
    info.textContent = extra.join(" · ");
    const count = document.createElement("span");
    count.className = "count";
    const remove = document.createElement("button");
    remove.className = "remove";
    remove.type = "button";
    remove.textContent = "×";
    remove.title = `stop watching for ${cleanText(msg.text)}`;
    remove.setAttribute("aria-label", remove.title);
    remove.hidden = this.owner === false; // only the owner may remove it
    remove.onclick = () => {
      this.error(null);
      if (!this.send({ type: "watch.remove", id: msg.id })) {
        this.error({ code: "no_session", message: "not connected", id: msg.id });
      }
    };
    li.replaceChildren(text, info, count, remove);
    this.list.set(msg.id, { ...msg, li, count });
    if (!prev) $("watch-list").append(li);
    this.countHits(msg.id);
    if ($("watch-error").dataset.watch === msg.id) this.error(null);
  }

  removed(msg) {
    this.list.get(msg.id)?.li.remove();
    this.list.delete(msg.id);
    this.mine.delete(msg.id);
    for (const [key, h] of this.hits) {
      if (h.id === msg.id) {
        h.li.remove();
        this.hits.delete(key);
      }
    }
    this.timeline.dropHits(msg.id);
  }

  hit(msg) {
    const key = hitKey(msg);
    let h = this.hits.get(key);
    if (!h) {
      // one notice per appearance: the end update (and a replay on attach) upserts this same line
      const li = document.createElement("li");
      li.dataset.hit = key;
      const chip = document.createElement("button");
      chip.className = "chip";
      chip.title = "seek the video here";
      const label = document.createElement("span");
      li.append(chip, " ", label);
      h = { li, chip, label };
      this.hits.set(key, h);
      this.insertLine(li, msg.start);
    }
    Object.assign(h, Object.fromEntries(Object.entries(msg).filter(([, v]) => v != null)));
    h.chip.textContent = h.end != null ? `${fmtTime(h.start)}–${fmtTime(h.end)}` : fmtTime(h.start);
    h.chip.onclick = () => this.seek(h);
    h.label.textContent = `${cleanText(h.text)} at ${fmtTime(h.start)}${h.end == null ? " (on screen now)" : ""}`;
    if (!this.announced.has(key)) {
      this.announced.add(key);
      h.li.classList.add("fresh");
      setTimeout(() => h.li.classList.remove("fresh"), 4000);
    }
    this.timeline.upsertHit({ id: msg.id, text: msg.text, start: msg.start, end: msg.end, evidence: msg.evidence });
    this.countHits(msg.id);
  }

  /** Notices newest first (by stream time: replayed hits land where they belong). */
  insertLine(li, start) {
    const list = $("watch-hits");
    const after = [...list.children].find((el) => this.hits.get(el.dataset.hit)?.start < start);
    list.insertBefore(li, after || null);
  }

  countHits(id) {
    const w = this.list.get(id);
    if (!w) return;
    const n = [...this.hits.values()].filter((h) => h.id === id).length;
    w.count.textContent = n ? `${n} hit${n === 1 ? "" : "s"}` : "";
  }

  error(msg) {
    const el = $("watch-error");
    el.hidden = !msg;
    el.dataset.watch = msg?.id || "";
    el.textContent = msg ? `${msg.code}: ${msg.message}` : "";
    if (msg?.id && !this.list.has(msg.id)) this.mine.delete(msg.id); // a refused add leaves nothing
  }
}
