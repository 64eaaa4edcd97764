"""Ingest errors a user can act on, and the warning for partly damaged media.

Each error is a :class:`scenekv.errors.UserError`, so the CLI prints it as one line and exits 2 and the
web layer sends it as an ``error`` message with ``code``. Messages name the source and say what is wrong.
"""

from __future__ import annotations

from scenekv.errors import UserError


class IngestError(UserError):
    """Base class of every ingest error."""

    code = "ingest_error"


class SourceNotFound(IngestError):
    code = "source_not_found"


class EmptySource(IngestError):
    code = "empty_source"


class NotMedia(IngestError):
    """The bytes are not a container/codec FFmpeg can read, or nothing in it decodes."""

    code = "not_media"


class NoVideoStream(IngestError):
    code = "no_video_stream"


class SourceUnreachable(IngestError):
    """A URL could not be opened: refused, timed out, HTTP error, name not resolved."""

    code = "source_unreachable"


class UnsupportedSource(IngestError):
    code = "unsupported_source"


class InvalidOption(IngestError):
    code = "invalid_option"


class InvalidImage(IngestError):
    """Pushed image bytes that are not a JPEG, PNG or WebP picture (ingest/images.py)."""

    code = "invalid_image"


class ImageTooLarge(InvalidImage):
    """A pushed image with more pixels than a server decodes (refused from its header)."""

    code = "image_too_large"


class DamagedMediaWarning(UserWarning):
    """Some packets could not be decoded; every decodable frame was still delivered."""


class SourceLostWarning(UserWarning):
    """A live source dropped and did not come back within the reconnect policy."""
