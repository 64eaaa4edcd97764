"""`scenekv train-world`: train SceneKV's world model from scratch (a fixed seed, CPU, < 45 min)."""

from __future__ import annotations

import argparse

HELP = "train the small LLaVA-OneVision world model on rendered world videos (writes a checkpoint)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="checkpoint folder to write (save_pretrained + tokenizer + model card data)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and the weights (default 0)")
    p.add_argument("--smoke", action="store_true", help="a few hundred steps on a few videos (tests)")
    p.add_argument("--work-dir", default=None, help="where rendered training videos go (default: a temp dir)")
    p.add_argument("--vision-steps", type=int, default=None)
    p.add_argument("--lm-steps", type=int, default=None)
    p.add_argument("--videos", type=int, default=None)


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import shlex
    import sys
    import tempfile

    from scenekv.world.train import TrainConfig, train

    cfg = TrainConfig.smoke(args.seed) if args.smoke else TrainConfig(seed=args.seed)
    over = {
        k: v
        for k, v in (
            ("vision_steps", args.vision_steps),
            ("lm_steps", args.lm_steps),
            ("videos", args.videos),
        )
        if v is not None
    }
    cfg = dataclasses.replace(cfg, **over)
    command = "scenekv " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="scenekv-world-") as tmp:
        rec = train(
            args.out,
            cfg,
            work_dir=args.work_dir or tmp,
            command=command,
            report=lambda m: print(m, flush=True),
        )
    print(f"wrote {args.out} in {rec.seconds['total']:.0f} s; held-out accuracy {rec.heldout}")
    return 0
