"""`scenekv caption`: bulk captioning of video files, one cue per scene, as WebVTT, SRT or JSONL."""

from __future__ import annotations

import argparse

from scenekv.units import clock

HELP = "caption video files scene by scene (SceneTiling + the VLM) into .vtt, .srt or .jsonl files"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from scenekv.cli.service_args import add_service_arguments

    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files")
    p.add_argument("--format", default="vtt", help="vtt, srt or jsonl (default vtt)")
    p.add_argument("--out", default=".", help="output directory (default: current directory)")
    p.add_argument("--json", action="store_true", help="print one JSON line per written file")
    add_service_arguments(p)


class Progress:
    """A bar on a terminal (time processed / total, ETA); plain lines every few seconds otherwise."""

    def __init__(self, name: str, total: float | None) -> None:
        import sys
        import time

        self.name, self.total, self.tty, self.out = name, total, sys.stderr.isatty(), sys.stderr
        self.started = self.last_line = time.monotonic()

    def show(self, pts: float, *, final: bool = False) -> None:
        import time

        now = time.monotonic()
        elapsed = now - self.started
        if self.total:
            frac = min(pts / self.total, 1.0) if not final else 1.0
            eta = elapsed / frac * (1 - frac) if frac > 0 else 0.0
            bar = "#" * int(frac * 30)
            text = f"{self.name} [{bar:<30}] {clock(pts)}/{clock(self.total)} ETA {clock(eta)}"
        else:
            text = f"{self.name} {clock(pts)} processed"
        if self.tty:
            print("\r" + text, end="\n" if final else "", file=self.out, flush=True)
        elif final or now - self.last_line >= 5:
            print(text, file=self.out, flush=True)
            self.last_line = now


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    from scenekv.cli.service_args import service_from_args, warn_if_random
    from scenekv.errors import UserError
    from scenekv.ingest.probe import media_duration
    from scenekv.qa.captions import output_path, parse_format, stream_cues, write_captions

    fmt = parse_format(args.format)
    missing = [v for v in args.videos if not Path(v).is_file()]
    if missing:
        raise UserError(f"no such file: {', '.join(missing)}", code="not_found")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    service = service_from_args(args, captions=True)
    try:
        warn_if_random(service)
        for video in args.videos:
            progress = Progress(Path(video).name, media_duration(video))
            sid, reused = service.ingest_file(
                video, fps=args.fps, carriers=args.carriers, on_progress=progress.show
            )
            progress.show(progress.total or 0.0, final=True)
            if reused:
                print(f"{Path(video).name}: reusing memory {sid}", file=sys.stderr)
                service.caption_missing(sid)  # it may have been ingested without captions (scenekv ask)
            cues = stream_cues(service.store, sid)
            path = write_captions(cues, output_path(args.out, video, fmt), fmt)
            if args.json:  # one line per written file (schema: README.md, "JSON output")
                row = {"video": video, "path": str(path), "format": fmt, "stream_id": sid}
                print(json.dumps({**row, "scenes": len(cues), "reused": reused}), flush=True)
            else:
                print(path)
    finally:
        service.shutdown()
    return 0
