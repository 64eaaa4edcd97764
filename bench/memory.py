"""Memory benchmark: Redis chunk write/read throughput and device memory over a simulated hour.

    python bench/memory.py [--frames 3600] [--chunks 64] [--repeats 5]

Part 1 - throughput. One chunk = 8 frames of ``pool:16`` (time tag + 16 carriers = 24 tokens per
frame) at the full LLaVA-OV-0.5B KV geometry (24 layers, 2 kv heads, head dim 64, bf16 = 12 KiB per
token), i.e. ~2.36 MB per chunk. We time MemoryStore writes through the ChunkWriter (encode + CRC +
one Lua step per chunk, acknowledged) and reads of 8 chunks per call (one MGET + decode + CRC check),
against ``redis-benchmark -t set,get -d <chunk bytes> -n N -P 16 -c 1`` on the same private
redis-server (no persistence), so the ratio shows what SceneKV's format and bookkeeping cost.

Part 2 - device memory over a 1 h stream at 1 fps, ``pool:16``, window 32, chunks of 8. Running the
real 0.5B vision tower and LLM for 3600 frames costs ~2 h on this CPU, so the vision and LLM
forwards are replaced by a backend that emits random tensors of the real shapes (729 x 896 vision
tokens per frame; 24 tokens of bf16 KV per frame at the 0.5B geometry). Everything else is the real
path: StreamSession's cache, export and evict, RollingMemory's scene tiling and chunking, the
ChunkWriter thread and Redis. Process RSS and the session's KV bytes are sampled as the hour runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from transformers import DynamicCache

from scenekv.memory import ChunkWriter, MemoryStore, RollingConfig, RollingMemory, chunk_keys, encode_chunk
from scenekv.memory import rolling as rolling_module
from scenekv.memory.allocator import fix_mmap_threshold
from scenekv.vlm import FrameSpan, KVChunk, KVGeometry, VisionFeatures, VLMBackend
from scenekv.vlm.configs import full_llava_onevision_05b_config
from scenekv.vlm.tokenizer import build_tiny_tokenizer

GEOMETRY = KVGeometry(layers=24, kv_heads=2, head_dim=64, dtype=torch.bfloat16)
TOKENS_PER_FRAME = 24  # pool:16 carriers + a ~8-token time tag
FRAMES_PER_CHUNK = 8


# -- a private redis-server ---------------------------------------------------------------------
class Server:
    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.dir = tempfile.mkdtemp(prefix="skv-bench-")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        self.url = f"redis://127.0.0.1:{self.port}/0"
        store = MemoryStore(self.url)
        for _ in range(200):
            try:
                store.client.ping()
                break
            except Exception:
                time.sleep(0.02)
        store.close()

    def used_memory(self) -> int:
        store = MemoryStore(self.url)
        try:
            return int(store.client.info("memory")["used_memory"])
        finally:
            store.close()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


# -- part 1: throughput -------------------------------------------------------------------------
def synthetic_chunk(first: int) -> KVChunk:
    tokens = TOKENS_PER_FRAME * FRAMES_PER_CHUNK
    shape = (GEOMETRY.layers, GEOMETRY.kv_heads, tokens, GEOMETRY.head_dim)
    g = torch.Generator().manual_seed(first)
    kv = [torch.randn(shape, generator=g).to(torch.bfloat16) for _ in range(2)]
    frames = [
        FrameSpan(first + i, float(first + i), i * TOKENS_PER_FRAME, TOKENS_PER_FRAME) for i in range(8)
    ]
    return KVChunk(
        *kv, position=100 + first * TOKENS_PER_FRAME, frames=frames, model_id="bench", carriers="pool:16"
    )


def throughput(url: str, n: int, repeats: int) -> dict:
    store = MemoryStore(url, "bench:", ttl_s=None)
    chunks = [synthetic_chunk(i * FRAMES_PER_CHUNK) for i in range(n)]
    keys = [chunk_keys(c, torch.randn(8, 3584)) for c in chunks]
    blob_bytes = len(encode_chunk(chunks[0]))
    writes, reads = [], []
    for r in range(repeats):
        sid = store.create_stream(f"tp{r}")
        writer = ChunkWriter(store, max_jobs=16, max_bytes=256 << 20)
        start = time.perf_counter()
        for c, k in zip(chunks, keys, strict=True):
            writer.submit(lambda st, c=c, k=k, sid=sid: st.write_chunk(sid, c, k), nbytes=c.nbytes)
        writer.close(timeout=None)
        writes.append(n * blob_bytes / (time.perf_counter() - start) / 1e6)
        cids = store.chunk_ids(sid)
        start = time.perf_counter()
        for i in range(0, n, 8):
            store.load_chunks(sid, cids[i : i + 8])
        reads.append(n * blob_bytes / (time.perf_counter() - start) / 1e6)
        store.delete_stream(sid)
    store.close()
    return {"blob_bytes": blob_bytes, "write_MBps": writes, "read_MBps": reads}


def redis_benchmark(port: int, size: int, n: int, repeats: int) -> dict:
    cmd = ["redis-benchmark", "-p", str(port), "-t", "set,get", "-d", str(size), "-n", str(n), "-P", "16",
           "-c", "1", "-q", "--csv"]  # fmt: skip
    sets, gets = [], []
    for _ in range(repeats):
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            cells = [c.strip('"') for c in line.split(",")]
            if cells[0] == "SET":
                sets.append(float(cells[1]) * size / 1e6)
            elif cells[0] == "GET":
                gets.append(float(cells[1]) * size / 1e6)
    return {"command": " ".join(cmd), "set_MBps": sets, "get_MBps": gets}


# -- part 2: an hour of stream with synthesised forwards ----------------------------------------
class _Params(torch.nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        self.config = config
        self.anchor = torch.nn.Parameter(torch.zeros(1, dtype=torch.bfloat16), requires_grad=False)


class SyntheticBackend(VLMBackend):
    """Real shapes, random numbers: 729 x 896 vision tokens per frame, 0.5B KV geometry, bf16."""

    model_id = "synthetic-llava-onevision-0.5b-geometry"
    is_random = True

    def __init__(self) -> None:
        self.model = _Params(full_llava_onevision_05b_config())
        self.tokenizer = build_tiny_tokenizer()
        self.hidden = 896
        self.gen = torch.Generator().manual_seed(0)

    @property
    def geometry(self) -> KVGeometry:
        return GEOMETRY

    @property
    def native_tokens_per_frame(self) -> int:
        return 196

    scene_frames = 0  # > 0: frames come in scenes of this many (a shared base plus noise), else noise

    def encode_frames(self, images, *, need_importance: bool = False) -> VisionFeatures:
        tokens = torch.randn(len(images), 729, self.hidden, generator=self.gen)
        if self.scene_frames:
            for i in range(len(images)):
                scene = (self.frames_encoded + i) // self.scene_frames
                base = torch.randn(729, self.hidden, generator=torch.Generator().manual_seed(scene))
                tokens[i] = base + 0.05 * tokens[i]
        self.frames_encoded += len(images)
        return VisionFeatures(tokens=tokens.to(torch.bfloat16), grid=(27, 27))

    def native_carriers(self, features):
        raise NotImplementedError

    def embed_ids(self, ids):
        return torch.zeros(len(ids), self.hidden, dtype=torch.bfloat16)

    def new_cache(self) -> DynamicCache:
        return DynamicCache(config=self.model.config.text_config)

    def forward(self, embeds, cache, positions, *, logits):
        shape = (1, GEOMETRY.kv_heads, embeds.shape[0], GEOMETRY.head_dim)
        for layer in range(GEOMETRY.layers):
            k = torch.randn(shape, generator=self.gen).to(torch.bfloat16)
            cache.update(k, k.clone(), layer)
        return None

    def rope_inv_freq(self):
        return 1.0 / (1e6 ** (torch.arange(0, GEOMETRY.head_dim, 2).float() / GEOMETRY.head_dim))


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def hour(url: str, frames: int, kv_dtype: str = "int8") -> dict:
    store = MemoryStore(url, "bench:", ttl_s=None)
    backend = SyntheticBackend()
    memory = RollingMemory.create(
        store, backend, carriers="pool:16", config=RollingConfig(window=32, chunk_frames=8, kv_dtype=kv_dtype)
    )
    image = np.zeros((384, 384, 3), np.uint8)
    marks = {1, 32, 60, 300, 600, 1200, 1800, 2400, 3000, frames}
    samples = [{"frame": 0, "rss_MB": round(rss_mb(), 1), "device_KV_MB": 0.0, "redis_MB": 0.0}]
    start = time.perf_counter()
    for i in range(frames):
        memory.append([(float(i), image)])
        if i + 1 in marks:
            memory.flush()
            tokens = memory.session.cache.get_seq_length()
            samples.append(
                {
                    "frame": i + 1,
                    "rss_MB": round(rss_mb(), 1),
                    "device_KV_MB": round(tokens * GEOMETRY.bytes_per_token / 1e6, 2),
                    "redis_MB": round(store.info(memory.sid).bytes / 1e6, 1),
                }
            )
            print(samples[-1], file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - start
    stats = dict(memory.writer.stats)
    memory.end()
    info = store.info(memory.sid)
    store.delete_stream(memory.sid)
    store.close()
    return {"samples": samples, "elapsed_s": elapsed, "chunks": info.chunks, "writer": stats}


def capped_day(
    url: str, hours: float, step: float, keep_full: float, cap: int, kv_dtype: str, scene_s: float = 120.0
) -> dict:
    """A live stream of ``hours`` of stream time (a frame every ``step`` s, scenes of ``scene_s``) under the
    serve defaults' tiers and a byte cap: Redis bytes and the full tier sampled as it runs."""
    from scenekv.memory import Retention
    from scenekv.memory.usage import tiers

    store = MemoryStore(url, "bench:", ttl_s=None)
    backend = SyntheticBackend()
    backend.scene_frames = max(1, round(scene_s / step))
    policy = Retention.tiers(keep_full=keep_full, keep_compact=24 * 3600.0, max_stream_bytes=cap)
    config = RollingConfig(window=32, chunk_frames=8, kv_dtype=kv_dtype, retention=policy)
    memory = RollingMemory.create(store, backend, carriers="pool:16", config=config)
    image = np.zeros((384, 384, 3), np.uint8)
    frames = int(hours * 3600 / step)
    every = max(1, frames // 24)
    peak, samples, start = 0, [], time.perf_counter()
    for i in range(frames):
        memory.append([(i * step, image)])
        if (i + 1) % 32 == 0 or i + 1 == frames:
            memory.flush()
            peak = max(peak, store.info(memory.sid).bytes)
        if (i + 1) % every == 0 or i + 1 == frames:
            memory.flush()
            info = store.info(memory.sid)
            t = tiers(store.chunk_index(memory.sid), store.scenes(memory.sid), info.extra)
            samples.append(
                {
                    "stream_h": round((i + 1) * step / 3600, 2),
                    "redis_MB": round(info.bytes / 1e6, 2),
                    "full_from_h": None
                    if t["full"]["from_pts"] is None
                    else round(t["full"]["from_pts"] / 3600, 2),
                    "newest_h": round((info.last_pts or 0) / 3600, 2),
                    "compacted_scenes": t["compacted"]["scenes"],
                    "cap_cut": t["cap_compacted_through"] is not None,
                }
            )
            print(samples[-1], file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - start
    memory.end()
    store.delete_stream(memory.sid)
    return {
        "samples": samples,
        "peak": peak,
        "elapsed_s": elapsed,
        "frames": frames,
        "failures": memory.retention_failures,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=3600, help="stream length in frames at 1 fps (3600)")
    parser.add_argument("--chunks", type=int, default=64, help="chunks per throughput repeat (64)")
    parser.add_argument("--repeats", type=int, default=5, help="throughput repeats; medians are quoted (5)")
    parser.add_argument("--kv-dtype", default="int8", help="storage dtype of the simulated stream (int8)")
    parser.add_argument(
        "--allocator",
        choices=("service", "fixed-threshold", "glibc-default"),
        default="service",
        help="service: the heap trimmed after each chunk write, as the encoder does (memory/allocator.py); "
        "fixed-threshold: mallopt(M_MMAP_THRESHOLD, --mmap-threshold) instead; glibc-default: neither",
    )
    parser.add_argument("--mmap-threshold", type=int, default=1 << 20, help="bytes, for fixed-threshold")
    parser.add_argument("--stream-only", action="store_true", help="skip the throughput part")
    parser.add_argument("--capped-hours", type=float, default=0, help="run a capped live stream this long")
    parser.add_argument("--pts-step", type=float, default=4.0, help="stream seconds between frames (capped)")
    parser.add_argument("--keep-full", type=float, default=3600.0, help="seconds of full KV (capped run)")
    parser.add_argument("--max-stream-bytes", type=int, default=200_000_000, help="the cap (capped run)")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    if args.allocator == "fixed-threshold":
        fix_mmap_threshold(args.mmap_threshold)
    if args.allocator == "glibc-default":
        rolling_module.trim_heap = lambda: False  # the service's trim, switched off for comparison
    if args.capped_hours:
        server = Server()
        try:
            run = capped_day(
                server.url,
                args.capped_hours,
                args.pts_step,
                args.keep_full,
                args.max_stream_bytes,
                args.kv_dtype,
            )
        finally:
            server.stop()
        cap = args.max_stream_bytes
        print(
            f"capped stream: {args.capped_hours:g} h of stream time, a frame every {args.pts_step:g} s "
            f"({run['frames']} frames in {run['elapsed_s']:.0f} s), keep_full {args.keep_full:g} s, "
            f"cap {cap} bytes, KV {args.kv_dtype}; peak {run['peak']} bytes = {run['peak'] / cap:.4f} x cap; "
            f"retention failures {run['failures']}"
        )
        print("| stream h | Redis MB | full KV from h | newest h | compacted scenes | cap cut full KV |")
        print("|---|---|---|---|---|---|")
        for x in run["samples"]:
            print(
                f"| {x['stream_h']} | {x['redis_MB']} | {x['full_from_h']} | {x['newest_h']} "
                f"| {x['compacted_scenes']} | {x['cap_cut']} |"
            )
        return 0
    server = Server()
    try:
        if not args.stream_only:
            tp = throughput(server.url, args.chunks, args.repeats)
            rb = redis_benchmark(server.port, tp["blob_bytes"], args.chunks, args.repeats)
        run = hour(server.url, args.frames, args.kv_dtype)
    finally:
        server.stop()
    if args.stream_only:
        _stream_table(args, run)
        return 0
    med = statistics.median
    w, r, s, g = med(tp["write_MBps"]), med(tp["read_MBps"]), med(rb["set_MBps"]), med(rb["get_MBps"])
    print(
        f"chunk blob: {tp['blob_bytes']} bytes ({TOKENS_PER_FRAME * FRAMES_PER_CHUNK} tokens x 12 KiB + head)"
    )
    print(f"redis-benchmark: {rb['command']}")
    print("| path | median MB/s | runs (MB/s) |")
    print("|---|---|---|")
    print(f"| SceneKV chunk write (ChunkWriter, acknowledged) | {w:.0f} | {_runs(tp['write_MBps'])} |")
    print(f"| redis-benchmark SET, same size | {s:.0f} | {_runs(rb['set_MBps'])} |")
    print(f"| SceneKV chunk read (8 per MGET, decoded, CRC checked) | {r:.0f} | {_runs(tp['read_MBps'])} |")
    print(f"| redis-benchmark GET, same size | {g:.0f} | {_runs(rb['get_MBps'])} |")
    print(f"write / SET = {w / s:.2f}, read / GET = {r / g:.2f}")
    print()
    _stream_table(args, run)
    return 0


def _stream_table(args: argparse.Namespace, run: dict) -> None:
    print(
        f"simulated stream: {args.frames} frames in {run['elapsed_s']:.0f}s, {run['chunks']} chunks, "
        f"KV stored as {args.kv_dtype}, allocator: {args.allocator}"
    )
    print("| frames | process RSS MB | device KV MB | Redis stream MB |")
    print("|---|---|---|---|")
    for x in run["samples"]:
        print(f"| {x['frame']} | {x['rss_MB']} | {x['device_KV_MB']} | {x['redis_MB']} |")
    print(f"writer: {run['writer']}")


def _runs(values: list[float]) -> str:
    return ", ".join(f"{v:.0f}" for v in values)


if __name__ == "__main__":
    sys.exit(main())
