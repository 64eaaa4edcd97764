"""Caption files for the bulk caption job: one cue per scene as WebVTT, SRT or JSON Lines.

Pure Python, no model and no Ray, so the CLI, the workers and the web layer all write the same
files. Cues are normalised once (``normalize_cues``) before any format is rendered:

- times are rounded to whole milliseconds first, so what a player shows is exactly what JSONL says;
- cues are sorted by start, a cue of zero or negative length is widened to ``min_duration_s``
  (players drop or flash such cues), and each end is clamped to the next cue's start so two scenes
  are never on screen at once; two cues starting at the same millisecond are an error, since one
  would have to vanish;
- text is cleaned: newlines normalised, control characters dropped, blank lines removed (in WebVTT
  and SRT a blank line ends the cue, so the rest of the caption would be lost or misparsed), and
  an empty caption becomes ``PLACEHOLDER`` rather than a cue with no text.

Files are written atomically (temp file in the same directory, fsync, rename): a crashed or killed
job leaves either the previous file or the complete new one, never half a file. Everything is UTF-8.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from scenekv.errors import UserError

PLACEHOLDER = "(no caption)"
MIN_DURATION_S = 0.5
FORMATS = ("vtt", "srt", "jsonl")
EXTENSIONS = {"vtt": ".vtt", "srt": ".srt", "jsonl": ".jsonl"}
_ALIASES = {"webvtt": "vtt", "json": "jsonl", "ndjson": "jsonl"}
_JSONL_KEYS = ("scene", "start", "end", "caption")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # C0 controls except tab and newline, and DEL


@dataclass(frozen=True)
class Cue:
    """One scene's caption: ``start``/``end`` in seconds from the start of the video."""

    start: float
    end: float
    text: str
    scene: int
    extra: Mapping[str, Any] = field(default_factory=dict)  # JSONL only (e.g. model, evidence)


def cues_from_scenes(scenes: Iterable[Any], *, video_end: float | None = None) -> list[Cue]:
    """Cues from ``MemoryStore.scenes(sid)`` (anything with index, start, end, caption).

    A scene still open (``end`` None, the last one of a stream) ends at ``video_end`` if given,
    else it gets the minimum duration.
    """
    cues = []
    for s in scenes:
        end = s.end if s.end is not None else (video_end if video_end is not None else s.start)
        cues.append(Cue(float(s.start), float(end), s.caption or "", int(s.index)))
    return cues


# -- normalisation -------------------------------------------------------------------------------
def clean_text(text: str | None) -> str:
    """Caption text safe for any cue format: no blank or control lines; never empty."""
    text = (text or "").replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n")
    text = _CONTROL.sub("", text).replace("\t", " ")
    lines = [line.strip() for line in text.split("\n")]
    return "\n".join(line for line in lines if line) or PLACEHOLDER


def _ms(seconds: float, what: str, scene: int) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, numbers.Real) or not math.isfinite(seconds):
        raise ValueError(f"scene {scene}: {what} time {seconds!r} is not a finite number of seconds")
    if seconds < 0:
        raise ValueError(f"scene {scene}: {what} time {seconds} s is negative")
    return round(float(seconds) * 1000)


def normalize_cues(cues: Iterable[Cue], *, min_duration_s: float = MIN_DURATION_S) -> list[Cue]:
    """Sorted, non-overlapping cues on whole milliseconds with clean text (see the module doc)."""
    if min_duration_s <= 0:
        raise ValueError("min_duration_s must be positive")
    min_ms = max(1, round(min_duration_s * 1000))
    timed = sorted(
        ((_ms(c.start, "start", c.scene), _ms(c.end, "end", c.scene), c) for c in cues),
        key=lambda t: (t[0], t[2].scene),
    )
    out: list[Cue] = []
    for i, (start, end, cue) in enumerate(timed):
        if end <= start:
            end = start + min_ms
        if i + 1 < len(timed):
            nxt_start, _, nxt = timed[i + 1]
            if nxt_start == start:
                raise ValueError(
                    f"scenes {cue.scene} and {nxt.scene} both start at {start / 1000:.3f} s; "
                    "a caption track can show only one of them"
                )
            end = min(end, nxt_start)
        out.append(Cue(start / 1000, end / 1000, clean_text(cue.text), cue.scene, dict(cue.extra)))
    return out


# -- timestamps ----------------------------------------------------------------------------------
def _clock(seconds: float, sep: str) -> str:
    total = round(seconds * 1000)
    if total < 0:
        raise ValueError(f"a cue time cannot be negative ({seconds} s)")
    hours, rest = divmod(total, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{sep}{millis:03d}"  # hours grow past 2 digits


def vtt_timestamp(seconds: float) -> str:
    """WebVTT ``HH:MM:SS.mmm`` (hours keep growing past 99: ``100:00:00.000``)."""
    return _clock(seconds, ".")


def srt_timestamp(seconds: float) -> str:
    """SRT ``HH:MM:SS,mmm`` (hours keep growing past 99)."""
    return _clock(seconds, ",")


# -- rendering -----------------------------------------------------------------------------------
def escape_vtt(text: str) -> str:
    """Cue text as WebVTT reads it literally: ``&``, ``<``, ``>`` as entities (so no ``-->`` either)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_vtt(cues: Iterable[Cue]) -> str:
    parts = ["WEBVTT\n"]
    for c in normalize_cues(cues):
        parts.append(
            f"\nscene-{c.scene}\n{vtt_timestamp(c.start)} --> {vtt_timestamp(c.end)}\n{escape_vtt(c.text)}\n"
        )
    return "".join(parts)


def render_srt(cues: Iterable[Cue]) -> str:
    """SRT has no escaping: text is written as is (``<b>`` is formatting to most players)."""
    parts = []
    for n, c in enumerate(normalize_cues(cues), start=1):
        parts.append(f"{n}\n{srt_timestamp(c.start)} --> {srt_timestamp(c.end)}\n{c.text}\n\n")
    return "".join(parts)


def render_jsonl(cues: Iterable[Cue]) -> str:
    """One object per scene: scene, start, end, caption, then the cue's extras."""
    lines = []
    for c in normalize_cues(cues):
        clash = sorted(set(c.extra) & set(_JSONL_KEYS))
        if clash:
            raise ValueError(f"scene {c.scene}: extra keys {clash} would overwrite the cue's own fields")
        row = {"scene": c.scene, "start": c.start, "end": c.end, "caption": c.text, **c.extra}
        try:
            lines.append(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"scene {c.scene}: extras are not JSON-serialisable ({exc})") from exc
    return "".join(lines)


# -- writing -------------------------------------------------------------------------------------
PathOrFile = str | os.PathLike[str] | IO[str]


def write_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` as UTF-8 to ``path`` via a temp file + rename; the old file survives a crash."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a caption file is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    """The process umask, read without os.umask(), which would change it for every thread."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def _write(render: Callable[[Iterable[Cue]], str], cues: Iterable[Cue], dest: PathOrFile) -> None:
    text = render(cues)  # render fully first: a bad cue raises before anything is written
    if hasattr(dest, "write"):
        dest.write(text)
    else:
        write_atomic(dest, text)


def write_vtt(cues: Iterable[Cue], dest: PathOrFile) -> None:
    """WebVTT to a path (atomically) or an open text file."""
    _write(render_vtt, cues, dest)


def write_srt(cues: Iterable[Cue], dest: PathOrFile) -> None:
    """SRT (numbered from 1) to a path (atomically) or an open text file."""
    _write(render_srt, cues, dest)


def write_jsonl(cues: Iterable[Cue], dest: PathOrFile) -> None:
    """JSON Lines to a path (atomically) or an open text file."""
    _write(render_jsonl, cues, dest)


_WRITERS = {"vtt": write_vtt, "srt": write_srt, "jsonl": write_jsonl}
_RENDERERS = {"vtt": render_vtt, "srt": render_srt, "jsonl": render_jsonl}


def render_captions(cues: Iterable[Cue], fmt: str) -> str:
    """``cues`` as the text of a ``fmt`` file (vtt, srt or jsonl), exactly as write_captions writes it."""
    return _RENDERERS[parse_format(fmt)](cues)


def stream_cues(store, sid: str) -> list[Cue]:
    """A stored stream's scene captions as cues; an open last scene ends at the newest stored frame."""
    return cues_from_scenes(store.scenes(sid), video_end=store.info(sid).last_pts)


def parse_format(fmt: str) -> str:
    """``vtt``/``webvtt``, ``srt``, ``jsonl``/``json`` (any case, leading dot allowed) -> canonical name."""
    name = fmt.strip().lower().lstrip(".")
    name = _ALIASES.get(name, name)
    if name not in _WRITERS:
        raise UserError(f"unknown caption format {fmt!r} (use {', '.join(FORMATS)})", code="bad_request")
    return name


def output_path(out_dir: str | os.PathLike[str], video: str | os.PathLike[str], fmt: str) -> Path:
    """Where ``scenekv caption VIDEO --out DIR`` puts a video's captions: DIR/<video stem>.<ext>."""
    return Path(out_dir) / (Path(video).stem + EXTENSIONS[parse_format(fmt)])


def write_captions(cues: Iterable[Cue], path: str | os.PathLike[str], fmt: str) -> Path:
    """Write ``cues`` to ``path`` in ``fmt`` (vtt, srt or jsonl), atomically; returns the path."""
    _WRITERS[parse_format(fmt)](cues, path)
    return Path(path)
