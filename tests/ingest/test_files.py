"""Sampling files: exact timestamps, the right frame for each slot, cuts, VFR, rotation, start time.

Every synthetic frame carries its frame number in pixels, so "the frame returned for pts t" is checked
against the pixels, not just the number printed next to it.
"""

from __future__ import annotations

import math
import threading

import av
import numpy as np
import pytest

from scenekv.ingest import open_source
from scenekv.world.cut_video import frame_times, read_frame_number, scene_at

METHODS = ["decode", "seek", "decord", "auto"]


def expected_slots(times, fps):
    """Oracle: for each slot k/fps the first frame time >= slot, de-duplicated, in order."""
    out = []
    k = 0
    end = times[-1]
    while k / fps <= end + 1e-9:
        later = [t for t in times if t >= k / fps - 1e-6]
        if later and (not out or later[0] > out[-1]):
            out.append(later[0])
        k += 1
    return out


def sample(path, **kwargs):
    with open_source(path, **kwargs) as src:
        frames = list(src)
    return frames, src


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("fps", [1.0, 3.0])
def test_known_rate_exact_frames(media, method, fps):
    path = media("cfr25.mp4", fps=25, gop=10)
    times = frame_times(duration=3.0, fps=25)
    frames, src = sample(path, fps=fps, method=method)
    want = expected_slots(times, fps)
    assert [f.pts for f in frames] == pytest.approx(want, abs=0.5 / 25)
    assert [read_frame_number(f.image) for f in frames] == [round(t * 25) for t in want]
    assert [f.index for f in frames] == list(range(len(want)))
    assert src.stats.frames == len(want) and src.stats.bad_packets == 0
    assert src.stats.duration == pytest.approx(3.0, abs=0.05)
    if method == "decode":  # B-frames between slots were never decoded, and the result is still exact
        assert src.stats.extra["skipped_packets"] > 0


def test_every_frame_at_29_97(media):
    path = media("ntsc.mp4", fps=30000 / 1001, duration=2.0)
    frames, _ = sample(path, fps=None)
    assert len(frames) == 60
    assert [f.pts for f in frames] == pytest.approx([i * 1001 / 30000 for i in range(60)], abs=1e-4)
    assert [read_frame_number(f.image) for f in frames] == list(range(60))


def test_keyframes_method_returns_keyframes_with_exact_pts(media):
    path = media("cfr25.mp4", fps=25, gop=10)  # keyframe every 0.4 s
    frames, src = sample(path, fps=1.0, method="keyframes")
    numbers = [read_frame_number(f.image) for f in frames]
    assert all(n % 10 == 0 for n in numbers)  # only keyframes
    assert [f.pts for f in frames] == pytest.approx([n / 25 for n in numbers], abs=1e-3)
    assert [f.pts for f in frames] == pytest.approx([0.0, 1.2, 2.0], abs=1e-3)  # first keyframe >= slot
    assert src.stats.method == "keyframes"


def test_keyframes_method_warns_when_gop_longer_than_slot(media):
    path = media("longgop.mp4", fps=25, gop=50)
    with pytest.warns(UserWarning, match="fewer frames"):
        frames, _ = sample(path, fps=2.0, method="keyframes")
    assert [f.pts for f in frames] == pytest.approx([0.0, 2.0], abs=1e-3)


def test_auto_seeks_with_a_keyframe_index_and_decodes_without(media):
    _, indexed = sample(media("gop5.mp4", fps=25, gop=5), fps=1.0)
    _, every = sample(media("gop5.mp4", fps=25, gop=5), fps=None)
    _, no_index = sample(media("c.ts", fps=25, duration=2.0, audio=True), fps=1.0)
    assert (indexed.stats.method, every.stats.method, no_index.stats.method) == ("seek", "decode", "decode")


@pytest.mark.parametrize("method", ["decode", "seek", "decord"])
def test_variable_frame_rate(media, method):
    path = media("vfr.mkv", fps=20, vfr=True, duration=4.0, gop=8)
    times = frame_times(duration=4.0, fps=20, vfr=True)
    frames, _ = sample(path, fps=2.0, method=method)
    want = expected_slots(times, 2.0)
    assert [f.pts for f in frames] == pytest.approx(want, abs=2e-3)  # Matroska stores milliseconds
    assert [read_frame_number(f.image) for f in frames] == [times.index(t) for t in want]


def test_every_vfr_frame_has_its_own_timestamp(media):
    path = media("vfr.mkv", fps=20, vfr=True, duration=4.0, gop=8)
    frames, _ = sample(path, fps=None)
    times = frame_times(duration=4.0, fps=20, vfr=True)
    assert len(frames) == len(times)
    assert [f.pts for f in frames] == pytest.approx(times, abs=2e-3)
    assert len({round(b.pts - a.pts, 3) for a, b in zip(frames, frames[1:], strict=False)}) >= 3


@pytest.mark.parametrize("method", ["decode", "seek", "decord"])
def test_nonzero_start_time_is_reported_from_zero(media, method):
    path = media("start10.mp4", fps=25, start_time=10.0, gop=10)
    frames, src = sample(path, fps=1.0, method=method)
    assert src.start_time == pytest.approx(10.0, abs=1e-3)
    assert [f.pts for f in frames] == pytest.approx([0.0, 1.0, 2.0], abs=1e-3)
    assert [read_frame_number(f.image) for f in frames] == [0, 25, 50]


def test_start_time_with_audio_uses_the_container_timeline(media):
    # AAC priming makes the audio start ~21 ms before the video: the video's first frame is not at 0.
    path = media("start5_audio.mov", fps=25, start_time=5.0, audio=True)
    frames, src = sample(path, fps=1.0)
    assert 0.0 <= frames[0].pts < 0.05
    assert src.start_time + frames[0].pts == pytest.approx(5.0, abs=1e-3)
    assert [read_frame_number(f.image) for f in frames] == [0, 25, 50]


def dominant_rgb(image):
    h = image.shape[0]
    return image[h // 4 :].reshape(-1, 3).mean(axis=0)  # below the frame-number strip


def test_hard_cuts_change_the_picture_and_scenes_drift_slowly(media):
    cuts = (1.0, 2.2)
    path = media("cuts.mp4", fps=25, duration=3.2, cuts=cuts)
    frames, _ = sample(path, fps=None)
    colours = [dominant_rgb(f.image) for f in frames]
    diffs = [float(np.abs(b - a).sum()) for a, b in zip(colours, colours[1:], strict=False)]
    cut_at = sorted(range(len(diffs)), key=diffs.__getitem__)[-2:]
    assert sorted(frames[i + 1].pts for i in cut_at) == pytest.approx(list(cuts), abs=0.5 / 25)
    within = [d for i, d in enumerate(diffs) if i not in cut_at]
    assert max(within) * 5 < min(diffs[i] for i in cut_at)
    # Within a scene frames differ (motion), so dedup and scene detection have something to measure.
    a, b = frames[0].image[30:].astype(int), frames[10].image[30:].astype(int)
    assert 0 < np.abs(a - b).mean() < 60
    assert [scene_at(f.pts, cuts) for f in frames[::25]] == [0, 1, 1, 2]


@pytest.mark.parametrize("method", ["decode", "seek", "decord"])
@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_metadata_is_applied(media, method, rotation):
    path = media(f"rot{rotation}.mp4", fps=10, duration=1.0, rotation=rotation)
    frames, _ = sample(path, fps=None, method=method)
    f = frames[5]  # frame 5: code bits 13 and 15 set
    expect_shape = (160, 120, 3) if rotation % 180 else (120, 160, 3)
    assert f.image.shape == expect_shape
    # Undo the display rotation (counter-clockwise) and the frame reads back upright.
    upright = np.rot90(f.image, -(rotation // 90))
    assert read_frame_number(upright) == 5
    # Where the code strip ends up: left column for 90 CCW, bottom row for 180, right column for 270.
    strip = {90: f.image[:, :8], 180: f.image[-8:], 270: f.image[:, -8:]}[rotation]
    assert (strip.mean(axis=2) > 128).mean() > 0.05  # white cells of the code are there


def test_resize_options(media):
    path = media("rot90.mp4", fps=10, duration=1.0, rotation=90)
    frames, _ = sample(path, fps=None, max_side=80)
    assert (frames[0].width, frames[0].height) == (60, 80)  # upright 120x160 -> aspect kept
    frames, _ = sample(path, fps=None, size=(64, 48))
    assert (frames[0].width, frames[0].height) == (64, 48)
    assert read_frame_number(np.rot90(sample(path, fps=None, max_side=80)[0][7].image, -1)) == 7


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("c.mkv", {}),
        ("c.webm", {}),
        ("c.avi", {}),
        ("c.mov", {"codec": "mpeg4"}),
        ("c.ts", {"audio": True}),
        ("c_audio.mp4", {"audio": True}),
    ],
)
def test_containers_and_codecs(media, name, kwargs):
    path = media(name, fps=25, duration=2.0, **kwargs)
    frames, src = sample(path, fps=2.0)
    numbers = [read_frame_number(f.image) for f in frames]
    start = numbers[0]  # MPEG-TS may put the first frame slightly after 0
    assert [f.pts - frames[0].pts for f in frames] == pytest.approx(
        [(n - start) / 25 for n in numbers], abs=0.02
    )
    assert len(frames) == 4
    assert all(f.image.dtype == np.uint8 and f.image.shape == (120, 160, 3) for f in frames)
    assert src.stats.bad_packets == 0


def test_stats_and_early_close(media):
    path = media("cfr25.mp4", fps=25, gop=10)
    with open_source(path, fps=5.0) as src:
        first = [next(src) for _ in range(3)]
        stats = src.stats
    assert [f.index for f in first] == [0, 1, 2]
    assert stats.frames == 3 and stats.decode_s > 0
    assert 0.4 <= stats.duration < 1.0  # what was read, not the whole file
    assert list(src) == []  # closed: iteration ends instead of crashing
    assert math.isfinite(stats.as_dict()["decode_s"])


def test_raw_h264_without_timestamps_gets_increasing_pts(tmp_path):
    """A raw .h264 stream has no timestamps: frames are spaced at the nominal rate, not all at 0."""
    path = tmp_path / "raw.h264"
    with av.open(str(path), "w", format="h264") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(12):
            image = np.full((48, 64, 3), 20 * i, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    frames, _ = sample(path, fps=None)
    assert [f.pts for f in frames] == [round(i * 0.04, 6) for i in range(12)]
    frames, _ = sample(path, fps=5.0)
    assert [f.pts for f in frames] == [0.0, 0.2, 0.4]


def test_close_from_another_thread_while_the_consumer_is_inside_next(media):
    src = open_source(media("cfr25.mp4", fps=25, gop=10), fps=None)
    inner = src._gen  # hold the consumer inside next() until the other thread has closed the source
    inside, go_on = threading.Event(), threading.Event()

    def held():
        for frame in inner:
            inside.set()
            go_on.wait(10)
            yield frame

    src._gen = held()
    got = []
    consumer = threading.Thread(target=lambda: got.append(next(src, None)))
    consumer.start()
    assert inside.wait(10)
    src.close()  # from this thread, while the consumer decodes: no error, no waiting
    go_on.set()
    consumer.join(10)
    assert got and got[0] is not None and got[0].index == 0
    assert list(src) == []  # closed: iteration ends
    with pytest.raises(AssertionError, match="not open"):  # the container was released, not leaked
        next(src.container.demux())


@pytest.mark.parametrize("method", ["decode", "seek", "decord"])
def test_a_time_range_yields_exactly_the_whole_pass_frames_in_it(tmp_path, method):
    """Ranges of a file can be decoded in parallel: each gives the same frames (same pts, same
    pictures) as one pass over the whole file, and no false truncation warning."""
    import warnings

    from scenekv.ingest import open_source
    from scenekv.world.cut_video import make_video, read_frame_number

    path = make_video(tmp_path / "r.mp4", duration=12, fps=10, size=(160, 120), gop=20)
    whole = [(f.pts, read_frame_number(f.image)) for f in open_source(path, fps=1, method=method)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        part = [
            (f.pts, read_frame_number(f.image))
            for f in open_source(path, fps=1, method=method, start=4.5, end=9)
        ]
    assert part == [x for x in whole if 4.5 <= x[0] < 9] and len(part) == 4


@pytest.mark.parametrize("method", ["decode", "seek"])
def test_ranges_and_resumes_of_a_low_frame_rate_file_sample_as_one_pass(tmp_path, method):
    """A 1.6 fps file sampled at 1 fps keeps some frames and skips others, and a slot can straddle a
    range boundary: the frame that serves it comes after the boundary. Ranges cut anywhere, and a
    resume just after any stored frame, must together give exactly the one-pass frames."""
    from fractions import Fraction

    from scenekv.ingest import open_source
    from scenekv.world.cut_video import make_video, read_frame_number

    path = make_video(tmp_path / "slow.mp4", duration=20, fps=Fraction(8, 5), size=(160, 120), gop=8)

    def frames(**kw):
        return [(f.pts, read_frame_number(f.image)) for f in open_source(path, fps=1, method=method, **kw)]

    whole = frames()
    assert 10 < len(whole) < 32  # some frames of the file are skipped, so slots matter
    for cuts in ([4.2], [4.2, 7.9, 13.1], [2.9, 3.3, 15.0]):
        bounds = [0.0, *cuts, None]
        parts = [frames(start=a, end=b) for a, b in zip(bounds, bounds[1:], strict=False)]
        assert sum(parts, []) == whole, cuts
    for i, (after, _) in enumerate(whole[:-1]):  # resume after each stored frame, as ingest_ranges does
        assert frames(start=after + 1e-4) == whole[i + 1 :], after
