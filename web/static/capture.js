// Frame capture: a playing <video> (file or webcam) -> canvas -> JPEG, at the session fps.

const MAX_SIDE = 512;          // the model sees 384x384; no point sending more
const MAX_BUFFERED = 2 << 20;  // skip frames while the socket has > 2 MiB unsent (live: drop, not queue)

export class FrameCapture {
  /**
   * @param {HTMLVideoElement} video
   * @param {(pts: number, blob: Blob) => Promise<boolean>} send
   * @param {{fps: number, live: boolean, buffered: () => number}} opts
   */
  constructor(video, send, { fps, live, buffered }) {
    this.video = video;
    this.send = send;
    this.fps = fps;
    this.live = live;          // webcam: pts = seconds since start; file: pts = video.currentTime
    this.buffered = buffered;
    this.canvas = document.createElement("canvas");
    this.ctx = this.canvas.getContext("2d");
    this.lastPts = -Infinity;
    this.sent = 0;
    this.skipped = 0;
    this.timer = null;
    this.busy = false;
    this.t0 = 0;
  }

  start() {
    this.t0 = performance.now();
    this.timer = setInterval(() => this.#tick(), 25);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }

  async #tick() {
    const v = this.video;
    if (this.busy || v.readyState < 2 || (!this.live && (v.paused || v.seeking))) return;
    const pts = this.live ? (performance.now() - this.t0) / 1000 : v.currentTime;
    if (pts < this.lastPts + 1 / this.fps - 1e-3) return; // not time for the next frame yet
    if (this.buffered() > MAX_BUFFERED) { this.skipped++; return; }
    this.busy = true;
    try {
      const w = v.videoWidth, h = v.videoHeight;
      if (!w || !h) return;
      const scale = Math.min(1, MAX_SIDE / Math.max(w, h));
      this.canvas.width = Math.round(w * scale);
      this.canvas.height = Math.round(h * scale);
      this.ctx.drawImage(v, 0, 0, this.canvas.width, this.canvas.height);
      const blob = await new Promise((r) => this.canvas.toBlob(r, "image/jpeg", 0.82));
      if (!this.timer) return; // stopped while encoding: the session may have ended
      if (blob && (await this.send(Number(pts.toFixed(3)), blob))) {
        this.lastPts = pts;
        this.sent++;
      }
    } finally {
      this.busy = false;
    }
  }
}
