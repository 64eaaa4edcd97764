"""A live MPEG-TS source over HTTP on loopback, for the live-ingest and `scenekv frames` tests."""

from __future__ import annotations

import contextlib
import http.server
import threading
import time


class TSServer:
    """Serves a .ts file like a live encoder: HTTP/1.0, no Content-Length, paced at ``speed`` x real time.

    ``cut_first`` ends the first connection after that fraction of the file; ``max_connections`` answers
    404 afterwards; ``loop`` repeats the file until stopped.
    """

    def __init__(
        self, data: bytes, duration: float, *, speed=4.0, cut_first=None, max_connections=None, loop=False
    ):
        self.data, self.duration, self.speed = data, duration, speed
        self.cut_first, self.max_connections, self.loop = cut_first, max_connections, loop
        self.connections = 0
        self.stop = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.connections += 1
                if outer.max_connections is not None and outer.connections > outer.max_connections:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "video/mp2t")
                self.end_headers()
                with contextlib.suppress(OSError):
                    outer.stream(self.wfile, first=outer.connections == 1)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/live.ts"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stream(self, out, first):
        data = self.data
        end = int(len(data) * self.cut_first) // 188 * 188 if first and self.cut_first else len(data)
        rate = len(data) / self.duration * self.speed if self.speed else None
        chunk = 188 * 20
        started, sent = time.monotonic(), 0
        while not self.stop.is_set():
            for pos in range(0, end, chunk):
                if self.stop.is_set():
                    return
                out.write(data[pos : min(pos + chunk, end)])
                sent += min(chunk, end - pos)
                if rate:
                    time.sleep(max(0.0, started + sent / rate - time.monotonic()))
            if not self.loop:
                return

    def close(self):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
