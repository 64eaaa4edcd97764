"""Bad input: one clear error (a UserError with a specific message), or frames plus a warning."""

from __future__ import annotations

import socket
import threading
import time
import warnings

import pytest

from scenekv.errors import UserError
from scenekv.ingest import DamagedMediaWarning, open_source
from scenekv.ingest import errors as E
from scenekv.world.cut_video import make_audio, read_frame_number


def open_all(path, **kwargs):
    with open_source(path, **kwargs) as src:
        return list(src), src


def test_missing_file(tmp_path):
    with pytest.raises(E.SourceNotFound, match=r"^no such file: .*nope\.mp4$"):
        open_source(tmp_path / "nope.mp4")


def test_empty_file(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(E.EmptySource, match=r"empty \(0 bytes\)"):
        open_source(tmp_path / "empty.mp4")


def test_directory(tmp_path):
    with pytest.raises(E.NotMedia, match="is a directory"):
        open_source(tmp_path)


def test_text_file_is_not_media(tmp_path):
    (tmp_path / "notes.mp4").write_text("this is not a video\n" * 50)
    with pytest.raises(E.NotMedia, match="not a readable media file"):
        open_source(tmp_path / "notes.mp4")


@pytest.mark.parametrize("ext", ["wav", "m4a", "mp3"])
def test_audio_only_file(tmp_path, ext):
    path = make_audio(tmp_path / f"tone.{ext}", duration=0.5)
    with pytest.raises(E.NoVideoStream, match=r"has no video stream \(streams found: audio\)"):
        open_source(path)


@pytest.mark.parametrize("url", ["ftp://example.com/a.mp4", "s3://bucket/key.mp4", "srt://127.0.0.1:9"])
def test_unsupported_scheme(url):
    with pytest.raises(E.UnsupportedSource, match="unsupported source scheme"):
        open_source(url)


def test_connection_refused_on_loopback():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once closed
    with pytest.raises(E.SourceUnreachable, match=f"cannot open http://127.0.0.1:{port}/live.ts: .*refused"):
        open_source(f"http://127.0.0.1:{port}/live.ts")


def test_silent_server_times_out():
    """A server that accepts and never answers must not hang the caller."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    port = server.getsockname()[1]
    held = []
    threading.Thread(target=lambda: held.append(server.accept()), daemon=True).start()
    started = time.monotonic()
    try:
        with pytest.raises(E.SourceUnreachable, match=r"no answer within 1 s"):
            open_source(f"http://127.0.0.1:{port}/live.ts", timeout=1.0)
    finally:
        server.close()
    assert time.monotonic() - started < 4


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"fps": 0}, "fps must be a positive"),
        ({"method": "magic"}, "unknown method 'magic'"),
        ({"size": (10, 10), "max_side": 5}, "not both"),
        ({"max_side": 0}, "max side"),
    ],
)
def test_bad_options(media, kwargs, match):
    with pytest.raises(E.InvalidOption, match=match):
        open_source(media("cfr25.mp4", fps=25, gop=10), **kwargs)


def test_all_ingest_errors_are_user_errors_with_codes():
    for cls in (
        E.SourceNotFound,
        E.EmptySource,
        E.NotMedia,
        E.NoVideoStream,
        E.SourceUnreachable,
        E.UnsupportedSource,
        E.InvalidOption,
        E.InvalidImage,
    ):
        assert issubclass(cls, UserError) and cls.code != UserError.code


def damaged_copy(src, dst, *, keep=None, scramble_at=None):
    data = bytearray(src.read_bytes())
    if scramble_at is not None:
        start = int(len(data) * scramble_at)
        for i in range(start, start + 3000, 7):
            data[i] = (data[i] * 31 + 17) % 256
    if keep is not None:
        data = data[: int(len(data) * keep)]
    dst.write_bytes(bytes(data))
    return dst


@pytest.mark.parametrize("ext", ["mkv", "avi"])
def test_truncated_file_yields_decodable_frames_and_warns(media, tmp_path, ext):
    full = media(f"whole.{ext}", fps=25, duration=4.0, gop=25)
    path = damaged_copy(full, tmp_path / f"cut.{ext}", keep=0.6)
    with pytest.warns(DamagedMediaWarning, match=r"skipped \d+ damaged packet"):
        frames, src = open_all(path, fps=None)
    assert 30 < len(frames) < 100
    # Every frame before the cut is intact (the decoder may conceal the cut packet as a last frame).
    numbers = [read_frame_number(f.image) for f in frames[:-1]]
    assert numbers == list(range(len(frames) - 1))
    assert src.stats.bad_packets >= 1


def test_truncated_mp4_without_index_says_so(media, tmp_path):
    path = damaged_copy(media("whole.mp4", fps=25, duration=4.0, gop=25), tmp_path / "cut.mp4", keep=0.6)
    with pytest.raises(E.NotMedia, match=r"without its index \(moov box\): truncated"):
        open_source(path)


@pytest.mark.parametrize("ext", ["mp4", "ts"])
def test_corrupt_middle_yields_frames_and_counts_bad_packets(media, tmp_path, ext):
    path = damaged_copy(
        media(f"whole.{ext}", fps=25, duration=4.0, gop=25), tmp_path / f"bad.{ext}", scramble_at=0.4
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frames, src = open_all(path, fps=None)
    assert src.stats.bad_packets > 0
    assert len(frames) >= 60
    assert [str(w.message) for w in caught if w.category is DamagedMediaWarning] == [
        f"{path}: skipped {src.stats.bad_packets} damaged packet(s); every decodable frame was delivered"
    ]
    assert [f.pts for f in frames] == sorted({f.pts for f in frames})  # still strictly increasing


@pytest.mark.filterwarnings("ignore::scenekv.ingest.errors.DamagedMediaWarning")
def test_garbage_payload_neither_crashes_nor_hangs(media, tmp_path):
    """Every payload destroyed: a clear error, or the handful of frames FFmpeg makes of what is left."""
    data = bytearray(media("whole.ts", fps=25, duration=4.0, gop=25).read_bytes())
    for i in range(2000, len(data)):
        if i % 188 > 4:  # keep TS packet headers, destroy every payload
            data[i] = (i * 7) % 256
    path = tmp_path / "garbage.ts"
    path.write_bytes(bytes(data))
    try:
        frames, src = open_all(path, fps=None)
    except E.NotMedia as exc:
        assert "no decodable video frame" in str(exc) or "not a readable media file" in str(exc)
    else:
        assert len(frames) < 10


def test_a_bad_time_range_is_refused(tmp_path):
    from scenekv.ingest import open_source
    from scenekv.ingest.errors import InvalidOption
    from scenekv.world.cut_video import make_video

    path = make_video(tmp_path / "r.mp4", duration=2, fps=5, size=(64, 48))
    with pytest.raises(InvalidOption, match="bad time range"):
        open_source(path, start=5, end=3)
    with pytest.raises(InvalidOption, match="bad time range"):
        open_source(path, start=-1)
