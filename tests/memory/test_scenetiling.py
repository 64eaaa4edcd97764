"""SceneTiling on real signatures of the tiny model: cuts found, static content left alone."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from scenekv.errors import UserError
from scenekv.ingest import open_source
from scenekv.memory import SceneTiler, offline_scenes
from scenekv.memory.scenetiling import depth_scores, similarities
from scenekv.vlm.carriers import frame_signature, frame_signatures
from scenekv.world.cut_video import make_video

from support.tiny_model import tiny

CUTS = (3.5, 17.2, 33.9, 50.5, 71.3)


def video_signatures(path):
    with open_source(path, fps=1.0) as src:
        pairs = list(frame_signatures(src, tiny(), batch=16))
    return [p for p, _ in pairs], torch.stack([s for _, s in pairs])


def array_signatures(images) -> torch.Tensor:
    return torch.cat(
        [frame_signature(tiny().encode_frames(images[i : i + 16])) for i in range(0, len(images), 16)]
    )


@pytest.fixture(scope="module")
def cut_video(tmp_path_factory):
    path = make_video(
        tmp_path_factory.mktemp("v") / "cuts.mp4", duration=90, fps=2, size=(160, 120), cuts=CUTS
    )
    return (path, *video_signatures(path))


@pytest.fixture(scope="module")
def drifting_video(tmp_path_factory):
    """Two minutes of one slowly drifting scene (the generator's in-scene motion), no cut."""
    path = make_video(
        tmp_path_factory.mktemp("v") / "drift.mp4", duration=120, fps=2, size=(160, 120), seed=1
    )
    return video_signatures(path)


def streamed(pts, sigs, images=None, **params):
    tiler = SceneTiler(**params)
    scenes = []
    for i, (p, s) in enumerate(zip(pts, sigs, strict=True)):
        scenes += tiler.push(p, s, image=None if images is None else images[i])
    return scenes + tiler.flush()


def check_cuts(scenes, cuts, duration):
    starts = [s.start for s in scenes[1:]]
    for cut in cuts:  # every cut found within 1 s (at 1 fps the next frame is <= 1 s after the cut)
        assert any(0 <= start - cut <= 1.0 for start in starts), (cut, starts)
    spurious = [s for s in starts if not any(0 <= s - c <= 1.0 for c in cuts)]
    assert len(spurious) <= duration / 60, spurious


@pytest.mark.parametrize("mode", ["streaming", "offline"])
def test_hard_cuts_are_found_within_a_second(cut_video, mode):
    _, pts, sigs = cut_video
    scenes = streamed(pts, sigs) if mode == "streaming" else offline_scenes(pts, sigs)
    check_cuts(scenes, CUTS, 90)
    assert len(scenes) == len(CUTS) + 1
    # scenes tile the timeline: each ends where the next starts; frame counts add up
    assert all(a.end == b.start for a, b in zip(scenes, scenes[1:], strict=False))
    assert scenes[0].start == 0.0 and scenes[-1].end == pts[-1] + 1.0
    assert sum(s.frames for s in scenes) == len(pts)


def test_streaming_and_offline_agree_on_hard_cuts(cut_video):
    _, pts, sigs = cut_video
    assert [s.as_dict() for s in streamed(pts, sigs)] == [s.as_dict() for s in offline_scenes(pts, sigs)]


def test_slowly_moving_content_is_one_scene(drifting_video):
    pts, sigs = drifting_video
    assert len(streamed(pts, sigs)) <= 1 + 2  # at most one spurious boundary per minute
    assert len(offline_scenes(pts, sigs)) <= 1 + 2
    assert len(streamed(pts, sigs)) == 1  # in fact none


def test_a_static_shot_with_sensor_noise_is_not_cut_by_normalisation():
    rng = np.random.default_rng(0)
    base = rng.integers(40, 216, (120, 160, 3)).astype(np.int16)
    images = [np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8) for _ in range(90)]
    sigs = array_signatures(images)
    pts = [float(i) for i in range(90)]
    assert len(streamed(pts, sigs)) == 1 and len(offline_scenes(pts, sigs)) == 1
    assert len(streamed(pts, sigs, images)) == 1 and len(offline_scenes(pts, sigs, images=images)) == 1
    # the guards are what makes this work: the bare relative test marks noise as many boundaries
    depths = depth_scores(similarities(sigs))
    assert (depths > depths.mean() + 0.5 * depths.std()).sum() > 5


def test_a_slow_pan_is_one_scene_and_a_cut_in_it_is_found():
    rng = np.random.default_rng(3)

    def place(tint):  # a blocky grey texture, 240 x 360, with a colour cast
        texture = np.kron(rng.integers(0, 256, (40, 60, 1)).astype(np.float32), np.ones((6, 6, 1)))
        return np.clip(texture * 0.6 + np.array(tint, np.float32), 0, 255)

    # (random weights see layout and colour, not texture: two grey noise textures look alike to them)
    world, other = place((80, 20, 0)), place((0, 40, 90))
    frames = []
    for i in range(90):  # pan 2 px per frame; at 45 s cut to another place
        src = world if i < 45 else other
        frames.append(src[40:160, 2 * i : 2 * i + 160].astype(np.uint8))
    sigs = array_signatures(frames)
    pts = [float(i) for i in range(90)]
    for scenes in (streamed(pts, sigs), offline_scenes(pts, sigs)):
        assert [s.start for s in scenes] == [0.0, 45.0]


def test_a_boundary_is_final_after_the_lookahead_and_state_survives_a_restart(cut_video):
    _, pts, sigs = cut_video
    tiler = SceneTiler(lookahead=4)
    closed_at = {}
    resumed = None
    for i, (p, s) in enumerate(zip(pts, sigs, strict=True)):
        if i == 40:  # "restart": serialise to JSON and continue with a new object
            resumed = SceneTiler.from_state(json.loads(json.dumps(tiler.state())))
            tiler = resumed
        for scene in tiler.push(p, s):
            closed_at[scene.index] = p
    scenes = [*closed_at]
    assert resumed is not None and len(scenes) == len(CUTS)
    # a scene closes exactly `lookahead` frames after the first frame of the next scene
    reference = streamed(pts, sigs)
    for index, when in closed_at.items():
        assert when == reference[index + 1].start + 3.0
    assert [s.as_dict() for s in tiler.flush()] == [reference[-1].as_dict()]


def test_flicker_does_not_make_one_frame_scenes(cut_video):
    _, pts, sigs = cut_video
    a, b = sigs[0], sigs[30]  # two different scenes
    flicker = torch.stack([a if i % 2 else b for i in range(30)])
    # A strobe alternating between two scenes' looks is one scene: no gap is deeper than its
    # neighbours. min_scene_s is off, so it cannot be what keeps the cuts out.
    for min_scene_s in (0.0, 2.0):
        scenes = streamed([float(i) for i in range(30)], flicker, min_scene_s=min_scene_s)
        assert [(s.start, s.end) for s in scenes] == [(0.0, 30.0)]
    # ... while the same two looks held for 10 s each are two scenes (the test can fail)
    held = torch.stack([b] * 10 + [a] * 10)
    scenes = streamed([float(i) for i in range(20)], held, min_scene_s=0.0)
    assert [(s.start, s.end) for s in scenes] == [(0.0, 10.0), (10.0, 20.0)]


def test_scenes_command_prints_json_lines_and_a_table(cut_video, capsys):
    import argparse

    from scenekv.cli import scenes as cmd_scenes

    path = cut_video[0]
    parser = argparse.ArgumentParser()
    cmd_scenes.add_arguments(parser)
    tiny_args = ["--model", "tiny-random-llava-onevision", "--max-frames", "40"]
    assert cmd_scenes.run(parser.parse_args([str(path), "--json", *tiny_args])) == 0
    out = capsys.readouterr()
    rows = [json.loads(line) for line in out.out.splitlines()]
    assert rows == [
        {"scene": 0, "start": 0.0, "end": 4.0, "frames": 4},
        {"scene": 1, "start": 4.0, "end": 18.0, "frames": 14},
        {"scene": 2, "start": 18.0, "end": 34.0, "frames": 16},
        {"scene": 3, "start": 34.0, "end": 40.0, "frames": 6},
    ]
    assert "RANDOM WEIGHTS" in out.err
    assert cmd_scenes.run(parser.parse_args([str(path), "--offline", *tiny_args])) == 0
    table = capsys.readouterr().out.splitlines()
    assert "offline" in table[0] and table[1].split() == ["scene", "start", "end", "frames"]
    assert [line.split() for line in table[2:]][1] == ["1", "4.000", "18.000", "14"]
    with pytest.raises(UserError):
        cmd_scenes.run(parser.parse_args([str(path) + ".missing", *tiny_args]))
