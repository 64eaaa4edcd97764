"""Redis key names of one stream (DESIGN §3), in one place so nothing else spells them.

Every key of stream ``sid`` starts with ``{prefix}stream:{{sid}}``: the braces are a Redis Cluster
hash tag, so all of a stream's keys live in one slot and every Lua step on them runs on one node.
A stream id may not contain ``:``, ``*``, ``?``, ``[`` or braces, so one stream's prefix is never a
prefix of another's keys, a glob over it matches only that stream, and the tag is exactly the id.
The registry of streams is its own key (another slot) and no per-stream step touches it. Layout
(``S = {prefix}stream:{{sid}}``)::

    S                     hash   source, model, fps, carriers, status, created_at, last_pts,
                                 next_pos + resume state (next_index, last_kept, last_signature,
                                 tiler), accounting (bytes, chunks, frames)
    S:chunks              zset   score = first pts, member = chunk id (first frame index)
    S:chunk:{cid}         string KV blob (codec.encode_chunk)
    S:chunk:{cid}:key     string retrieval keys (codec.encode_keys): loadable without the KV
    S:chunkmeta           hash   cid -> small JSON (pts range, positions, tokens, scene, bytes)
    S:scenes              zset   score = start, member = scene id
    S:scene:{id}          hash   start, end, caption, chunks (JSON list), closed, frames, ...
    S:events              stream scene.closed, scene.compacted, ... (capped, MAXLEN ~)
    S:owner               string lease of the process appending to the stream (PX lease)
    S:eventmarks          hash   event key -> event id: stream-level events already added (dedup)
    S:readings            zset   the content index's frame entries: score = pts, member =
                                 "pts|obj:<label>|bg:<label>" (content_index.py)
    S:captionwords        zset   the same for scene captions: score = scene start, member = "start|word:w|..."
    S:labels              hash   label -> entries that show it (which S:idx:* keys exist)
    S:idx:{label}         zset   score = pts, member = pts: where one label was read
    S:watches             hash   watch id -> JSON (text, webhook, cooldown_s, created): standing
                                 questions on the stream (watches.py)
    S:watchhits           hash   "<watch id>|<start>" -> JSON hit (start, end, scene_id, evidence)
    S:watchorder          zset   score = start, member = "<watch id>|<start>": hits in time order
    {prefix}streams       set    ids of known streams (for listing; stale ids are pruned)
    {prefix}placement     hash   stream id -> name of the encoder serving it (workers/placement.py)
    {prefix}encoder_pool  string JSON record of the deployment's shared encoder pool: id, names, model
                                 (workers/pool_record.py)
    {prefix}{pool:ID}:push|file|live  set   streams open on pool ID, by kind (workers/stream_caps.py)
    {prefix}{pool:ID}:touched         zset  score = unix time a stream was last used: idle release
    {prefix}{pool:ID}:holders         hash  stream id -> the service holding its place
    {prefix}{pool:ID}:holders:H       string a live holder H (expires ALIVE_S after its last beat)
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from scenekv import defaults
from scenekv.errors import UserError

DEFAULT_PREFIX = defaults.DEFAULT_PREFIX  # re-exported: memory users import it from here
_SID = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_PREFIX = re.compile(r"^[A-Za-z0-9_.\-:]{0,64}$")


def check_sid(sid: str) -> str:
    if not isinstance(sid, str) or not _SID.match(sid):
        raise UserError(
            f"bad stream id {sid!r}: use 1-64 letters, digits, '_', '-' or '.'", code="bad_stream_id"
        )
    return sid


def check_prefix(prefix: str) -> str:
    if not _PREFIX.match(prefix):
        raise UserError(f"bad key prefix {prefix!r}: use letters, digits, '_', '-', '.', ':'")
    return prefix


def new_sid() -> str:
    """A fresh random stream id (URL- and key-safe)."""
    return "s" + secrets.token_hex(8)


@dataclass(frozen=True)
class StreamKeys:
    prefix: str
    sid: str

    @property
    def base(self) -> str:
        return f"{self.prefix}stream:{{{self.sid}}}"

    @property
    def untagged_base(self) -> str:
        """Where a stream's keys lived before the hash tag (version 0.1 layouts; migrate_untagged.py)."""
        return f"{self.prefix}stream:{self.sid}"

    @property
    def untagged_glob(self) -> str:
        """SCAN pattern for the sub-keys of an untagged stream (``untagged_base:*``)."""
        return f"{_escape_glob(self.untagged_base)}:*"

    @property
    def stream(self) -> str:
        return self.base

    @property
    def chunks(self) -> str:
        return f"{self.base}:chunks"

    @property
    def chunkmeta(self) -> str:
        return f"{self.base}:chunkmeta"

    @property
    def scenes(self) -> str:
        return f"{self.base}:scenes"

    @property
    def events(self) -> str:
        return f"{self.base}:events"

    @property
    def owner(self) -> str:
        return f"{self.base}:owner"

    @property
    def eventmarks(self) -> str:
        return f"{self.base}:eventmarks"

    @property
    def readings(self) -> str:
        return f"{self.base}:readings"

    @property
    def caption_words(self) -> str:
        return f"{self.base}:captionwords"

    @property
    def labels(self) -> str:
        return f"{self.base}:labels"

    @property
    def label_base(self) -> str:
        """What a label's key starts with: the Lua steps append the label (``S:idx:``)."""
        return f"{self.base}:idx:"

    def label(self, label: str) -> str:
        return f"{self.label_base}{label}"

    @property
    def watches(self) -> str:
        return f"{self.base}:watches"

    @property
    def watch_hits(self) -> str:
        return f"{self.base}:watchhits"

    @property
    def watch_order(self) -> str:
        return f"{self.base}:watchorder"

    @property
    def registry(self) -> str:
        return f"{self.prefix}streams"

    def chunk(self, cid: str | int) -> str:
        return f"{self.base}:chunk:{cid}"

    def chunk_key(self, cid: str | int) -> str:
        return f"{self.base}:chunk:{cid}:key"

    def scene(self, scene_id: str | int) -> str:
        return f"{self.base}:scene:{scene_id}"

    @property
    def glob(self) -> str:
        """SCAN pattern for this stream's sub-keys (``base:*``, so stream "a" never matches "ab")."""
        return f"{_escape_glob(self.base)}:*"


def keys_for(prefix: str, sid: str) -> StreamKeys:
    return StreamKeys(check_prefix(prefix), check_sid(sid))


def placement_key(prefix: str) -> str:
    """The hash of which encoder serves which stream: one per prefix, not per stream."""
    return f"{prefix}placement"


def encoder_pool_key(prefix: str) -> str:
    """The record of the shared encoder pool every gateway of the deployment uses."""
    return f"{prefix}encoder_pool"


def open_stream_keys(prefix: str, pool_id: str) -> tuple[str, ...]:
    """The sets of streams open on pool ``pool_id`` (push, file, live), their last-use zset and
    their holders' hash: one hash tag, so a Lua step may touch them all on a Redis Cluster."""
    base = f"{prefix}{{pool:{pool_id}}}"
    return (f"{base}:push", f"{base}:file", f"{base}:live", f"{base}:touched", f"{base}:holders")


def _escape_glob(text: str) -> str:
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)
