"""`scenekv train-world --smoke`: the training command runs end to end, learns, and writes a checkpoint
that SceneKV loads in the layout it was trained in."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch


def test_smoke_training_lowers_the_loss_and_writes_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "ckpt"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "scenekv.cli",
            "train-world",
            str(out),
            "--smoke",
            "--work-dir",
            str(tmp_path / "w"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    import json

    rec = json.loads((out / "training.json").read_text())
    vision, lm = rec["vision_loss"], rec["lm_loss"]
    assert np.mean(vision[-10:]) < 0.7 * np.mean(vision[:10])
    assert np.mean(lm[-10:]) < 0.7 * np.mean(lm[:10])
    card = (out / "README.md").read_text()
    assert "scenekv train-world" in card and "| language step | loss |" in card

    from scenekv.vlm import load_backend

    backend = load_backend(str(out))
    assert backend.prompt_format.tag_after and backend.prompt_format.time_format == "clock"
    assert backend.world_only and not backend.is_random
    frame = np.full((360, 640, 3), (240, 210, 40), np.uint8)
    from scenekv.vlm import StreamSession

    session = StreamSession(backend, "pool:16")
    (record,) = session.append([(83.0, frame)])
    tag = backend.prompter.tag_ids(83.0)
    assert backend.tokenizer.decode(tag) == "<01:23>"
    assert record.kv_tokens == 16 + len(tag)
    # the tag follows the frame's carriers: the segment's last embeddings are the tag's
    carriers = torch.zeros(16, backend.model.config.text_config.hidden_size)
    segment, _, end = backend.frame_segment(0, tag, carriers, (4, 4))
    assert end == 16 + len(tag) and torch.equal(segment[-len(tag) :], backend.embed_ids(tag))
    assert not segment[:16].any()
