"""A stream's resume state: what a restarted process needs to continue it exactly.

Stored in the stream hash with every chunk (as of that chunk's last frame, so the state never runs
ahead of the stored KV) and on detach/end (as of the newest frame); read by ``attach``. One class
owns both directions, so the hash fields are spelled once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch

from scenekv.vlm.session import ResumePoint


@dataclass(frozen=True)
class StreamResume:
    next_index: int
    next_pos: int
    last_pts: float | None  # newest frame whose KV is stored: where a restart resumes
    newest_pts: float | None  # newest frame the writer had seen at this write
    last_kept: int  # the frame a dedup-dropped next frame maps to
    last_signature: torch.Tensor | None  # dedup compares the next frame with it
    tiler: dict | None  # SceneTiler.state() as of the same frame

    def to_fields(self) -> dict:
        sig = self.last_signature
        return {
            "next_index": self.next_index,
            "next_pos": self.next_pos,
            "last_pts": "" if self.last_pts is None else repr(float(self.last_pts)),
            "newest_pts": "" if self.newest_pts is None else repr(float(self.newest_pts)),
            "last_kept": self.last_kept,
            "last_signature": b"" if sig is None else sig.detach().float().cpu().numpy().tobytes(),
            "tiler": json.dumps(self.tiler),
        }

    @classmethod
    def from_fields(cls, h: dict[str, bytes]) -> StreamResume:
        """From the stream hash as redis-py returns it (str field names, bytes values)."""
        sig = h.get("last_signature") or b""
        tiler = h.get("tiler")
        return cls(
            next_index=int(h.get("next_index") or 0),
            next_pos=int(h.get("next_pos") or 0),
            last_pts=float(h["last_pts"]) if h.get("last_pts") else None,
            newest_pts=float(h["newest_pts"]) if h.get("newest_pts") else None,
            last_kept=int(h.get("last_kept") or 0),
            last_signature=torch.from_numpy(np.frombuffer(sig, dtype=np.float32).copy()) if sig else None,
            tiler=json.loads(tiler) if tiler and tiler != b"null" else None,
        )

    def point(self) -> ResumePoint:
        """What the device session needs (vlm/session.py)."""
        return ResumePoint(
            next_index=self.next_index,
            next_position=self.next_pos,
            last_pts=self.last_pts,
            last_kept_index=self.last_kept,
            last_signature=self.last_signature,
        )
