"""Cuts that do not depend on the model: gradual transitions and flashes on real generated media.

The clip (world/transitions.py, seed 5) has a hard cut, two dissolves, a fade through black and a
wipe. Cut on the model's frame features alone, both the random tiny model and the trained world model
miss its first dissolve (their features glide through it); with the frames' colour histograms
combined in, every boundary is found inside its transition (+-1 s), on the causal tiler, the offline
one, `scenekv scenes` and a stream's RollingMemory alike.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from scenekv.ingest import open_source
from scenekv.memory import RollingConfig, RollingMemory, SceneTiler, offline_scenes
from scenekv.memory.image_signal import HISTOGRAM_SIZE, colour_histogram, histogram_similarity
from scenekv.vlm import load_backend
from scenekv.vlm.carriers import frame_signature
from scenekv.world.transitions import Edit, make_transition_video

from support.tiny_model import tiny

EDITS = (
    Edit("cut", 8.5, 8.5),
    Edit("dissolve", 17.3, 19.6),
    Edit("fade", 28.2, 30.0),
    Edit("wipe", 39.4, 40.6),
    Edit("dissolve", 49.2, 51.7),
)
DISSOLVE = EDITS[1]
MODELS = ("tiny-random-llava-onevision", "scenekv-world")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """(path, pts, RGB frames) of the clip sampled at 1 fps."""
    path = make_transition_video(
        tmp_path_factory.mktemp("v") / "transitions.mp4",
        edits=EDITS,
        duration=60,
        fps=5,
        size=(320, 180),
        seed=5,
    )
    with open_source(path, fps=1.0) as src:
        frames = [(f.pts, f.image) for f in src]
    return path, [p for p, _ in frames], [im for _, im in frames]


def signatures(backend, images) -> torch.Tensor:
    return torch.cat(
        [frame_signature(backend.encode_frames(images[i : i + 16])) for i in range(0, len(images), 16)]
    )


@pytest.fixture(scope="module")
def model_signatures(clip):
    _, _, images = clip
    return {name: signatures(tiny() if name == MODELS[0] else load_backend(name), images) for name in MODELS}


def streamed(pts, sigs, images=None, **params) -> list[float]:
    tiler = SceneTiler(**params)
    scenes = []
    for i, (p, s) in enumerate(zip(pts, sigs, strict=True)):
        scenes += tiler.push(p, s, image=None if images is None else images[i])
    return [s.start for s in scenes + tiler.flush()][1:]


def found(starts, edit: Edit) -> bool:
    return any(edit.start - 1.0 <= t <= edit.end + 1.0 for t in starts)


def assert_every_boundary_once(starts) -> None:
    assert all(found(starts, e) for e in EDITS), starts
    assert len(starts) == len(EDITS), starts  # one boundary per transition, nothing else


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("mode", ["streaming", "offline"])
def test_the_colour_signal_cuts_the_dissolve_the_model_misses(clip, model_signatures, model, mode):
    _, pts, images = clip
    sigs = model_signatures[model]

    def starts(**kw):
        if mode == "streaming":
            return streamed(pts, sigs, **kw)
        return [s.start for s in offline_scenes(pts, list(sigs), **kw)][1:]

    assert not found(starts(), DISSOLVE)  # model features alone: the dissolve is no cut
    assert_every_boundary_once(starts(images=images))


def test_scenes_command_and_a_streams_memory_use_the_colour_signal(clip, store, capsys):
    from scenekv.cli import scenes as cmd_scenes

    path, pts, images = clip
    parser = argparse.ArgumentParser()
    cmd_scenes.add_arguments(parser)
    starts = {}
    for extra in ([], ["--model-only"]):
        assert cmd_scenes.run(parser.parse_args([str(path), "--json", "--model", MODELS[0], *extra])) == 0
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        starts[bool(extra)] = [row["start"] for row in rows][1:]
    assert_every_boundary_once(starts[False])
    assert not found(starts[True], DISSOLVE)
    # a stream: frames appended to RollingMemory reach its tiler with their pictures
    memory = RollingMemory.create(
        store, tiny(), carriers="pool:4", config=RollingConfig(window=10, chunk_frames=4), source="t.mp4"
    )
    frames = list(zip(pts, images, strict=True))
    for i in range(0, len(frames), 4):
        memory.append(frames[i : i + 4])
    memory.close_last_scene()
    memory.flush()
    assert_every_boundary_once([s.start for s in store.scenes(memory.sid)][1:])
    memory.detach()


@pytest.mark.parametrize("flash_s", [1.0, 2.0])
def test_a_flash_of_one_or_two_frames_makes_no_scene(tmp_path, flash_s):
    """Frames pushed towards white for 1-2 samples and back to the same shot; a real cut later."""
    edits = [Edit("cut", 30.5, 30.5), Edit("flash", 15.0, 15.0 + flash_s)]
    path = make_transition_video(
        tmp_path / "flash.mp4", edits=edits, duration=45, fps=1, size=(320, 180), seed=1
    )
    with open_source(path, fps=1.0) as src:
        pts, images = zip(*[(f.pts, f.image) for f in src], strict=True)
    sigs = signatures(tiny(), list(images))
    hists = [colour_histogram(im) for im in images]
    assert histogram_similarity(hists[14], hists[15]) < 0.6  # the flash is a deep dip, like a cut
    for min_scene_s in (2.0, 0.0):  # not min_scene_s keeping it out
        assert streamed(pts, sigs, images, min_scene_s=min_scene_s) == [31.0]
        scenes = offline_scenes(pts, list(sigs), images=list(images), min_scene_s=min_scene_s)
        assert [s.start for s in scenes][1:] == [31.0]
    # the flash rule is what does it (the test can fail): without it the flash opens a scene
    assert 15.0 in streamed(pts, sigs, images, flash_frames=0)


def test_tiler_state_with_pictures_survives_a_restart_anywhere(clip, model_signatures):
    _, pts, images = clip
    sigs = model_signatures[MODELS[0]]
    reference = streamed(pts, sigs, images)
    tiler, scenes = SceneTiler(), []
    for i, (p, s) in enumerate(zip(pts, sigs, strict=True)):
        tiler = SceneTiler.from_state(json.loads(json.dumps(tiler.state())))  # "restart" before every frame
        scenes += tiler.push(p, s, image=images[i])
    assert [s.start for s in scenes + tiler.flush()][1:] == reference
    # a state stored before the image signal existed still loads (model signal until pictures arrive)
    old = SceneTiler()
    old.push(0.0, sigs[0])
    state = old.state()
    state["last"] = state.pop("recent")[0][0]
    del state["far"], state["settled"]
    assert SceneTiler.from_state(state).push(1.0, sigs[1], image=images[1]) == []


def test_colour_histogram_is_a_cheap_motion_blind_colour_summary():
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (180, 640, 3), dtype=np.uint8)
    h = colour_histogram(texture[:, :320])
    assert h.shape == (HISTOGRAM_SIZE,) and h.dtype == np.float32
    assert np.allclose([h[:17].sum(), h[17:25].sum(), h[25:].sum()], 1.0)  # hue + grey, saturation, value
    assert histogram_similarity(h, colour_histogram(texture[:, 100:420])) > 0.9  # a pan: same colours
    grey = colour_histogram(np.full((90, 160), 128, np.uint8))  # grey frames are accepted too
    assert histogram_similarity(grey, colour_histogram(np.full((90, 160, 3), (220, 40, 40), np.uint8))) < 0.5
    with pytest.raises(ValueError):
        colour_histogram(np.zeros((4, 4, 2), np.uint8))
