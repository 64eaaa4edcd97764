// SceneKV WebSocket client: JSON messages in, events out; reconnects and re-attaches by stream_id.

export class SceneKVClient extends EventTarget {
  constructor(url) {
    super();
    this.url = url;
    this.ws = null;
    this.streamId = null;
    this.wantOpen = false;
    this.retry = 0;
    this.onOpenSend = null; // first message after (re)connecting
  }

  /** Open the socket; resolves once it is open. */
  connect() {
    this.wantOpen = true;
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      ws.binaryType = "arraybuffer";
      this.ws = ws;
      this.#state(this.retry ? "reconnecting" : "connecting");
      ws.onopen = () => {
        this.retry = 0;
        this.#state("open");
        if (this.onOpenSend) this.send(this.onOpenSend());
        resolve();
      };
      ws.onmessage = (ev) => {
        let msg;
        try { msg = JSON.parse(ev.data); } catch { return; }
        if (msg.type === "session.started") {
          this.streamId = msg.stream_id;
          if (msg.stream_key) rememberKey(msg.stream_id, msg.stream_key);
        }
        this.dispatchEvent(new CustomEvent(msg.type, { detail: msg }));
        this.dispatchEvent(new CustomEvent("message", { detail: msg }));
      };
      ws.onerror = () => reject(new Error("WebSocket error"));
      ws.onclose = (ev) => {
        this.#state("closed", ev.reason || `code ${ev.code}`);
        if (this.wantOpen && this.ws === ws) this.#reconnect();
      };
    });
  }

  #reconnect() {
    const delay = Math.min(10000, 500 * 2 ** this.retry++);
    this.#state("reconnecting");
    setTimeout(() => {
      if (!this.wantOpen) return;
      // Continue the same stream after a drop or a server restart.
      this.onOpenSend = this.streamId ? () => attachMessage(this.streamId) : null;
      this.connect().catch(() => {});
    }, delay);
  }

  close() {
    this.wantOpen = false;
    if (this.ws) this.ws.close(1000, "bye");
  }

  get isOpen() { return this.ws && this.ws.readyState === WebSocket.OPEN; }
  get buffered() { return this.ws ? this.ws.bufferedAmount : 0; }

  send(msg) {
    if (!this.isOpen) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  /** Binary frame: 4-byte big-endian header length, JSON header {pts}, JPEG bytes. */
  async sendFrame(pts, blob) {
    if (!this.isOpen) return false;
    const header = new TextEncoder().encode(JSON.stringify({ pts }));
    const image = new Uint8Array(await blob.arrayBuffer());
    const out = new Uint8Array(4 + header.length + image.length);
    new DataView(out.buffer).setUint32(0, header.length, false);
    out.set(header, 4);
    out.set(image, 4 + header.length);
    this.ws.send(out);
    return true;
  }

  #state(state, detail = "") {
    this.dispatchEvent(new CustomEvent("state", { detail: { state, detail } }));
  }
}

// Owner keys of the streams this browser started (session.started's stream_key): re-attaching
// with one may push, end the stream and edit its watches; without one a page watches and asks.
const KEYS = "scenekv.stream_keys";
const MAX_KEYS = 50;
const tabKeys = new Map(); // this tab's keys: enough to reconnect where localStorage is off

function storedKeys() {
  try { return JSON.parse(localStorage.getItem(KEYS) || "{}"); } catch { return {}; }
}

function rememberKey(sid, key) {
  tabKeys.set(sid, key);
  const keys = storedKeys();
  delete keys[sid];
  keys[sid] = key; // newest last: the oldest are dropped first
  const sids = Object.keys(keys);
  for (const old of sids.slice(0, Math.max(0, sids.length - MAX_KEYS))) delete keys[old];
  try { localStorage.setItem(KEYS, JSON.stringify(keys)); } catch { /* private mode: this tab only */ }
}

/** session.start for an existing stream, with its key when this browser started it. */
export function attachMessage(sid) {
  const key = tabKeys.get(sid) || storedKeys()[sid];
  return key ? { type: "session.start", stream_id: sid, stream_key: key } : { type: "session.start", stream_id: sid };
}
