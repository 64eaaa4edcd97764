"""Qwen2.5-VL (M-RoPE): the streaming path equals transformers' own generate() on pixels."""

from __future__ import annotations

from functools import lru_cache

import pytest
import torch

from scenekv.errors import UserError
from scenekv.vlm import SamplingParams, StreamSession, load_backend, time_tag

from support.tiny_model import assert_moved_chunk_answers_identically, frames

QUESTION = "What happened at 00:02?"
ATOL = 1e-4


@lru_cache(maxsize=1)
def qwen():
    return load_backend("tiny-random-qwen2.5-vl")


def test_fidelity_qwen_streaming_equals_checkpoint_path_on_pixels():
    """Frames prefilled one batch at a time on our cache == the model's own image path, 3-D
    positions from its get_rope_index, and its generate(): tokens and every step's logits."""
    b = qwen()
    clip = frames(4)
    sess = StreamSession(b, "native")
    sess.append(clip[:1])
    sess.append(clip[1:])
    gen = sess.ask(QUESTION, params=SamplingParams(max_new_tokens=6), record_logits=True)
    list(gen)

    def ids(text: str) -> list[int]:
        return b.tokenizer(text, add_special_tokens=False)["input_ids"]

    pixels, grid = b.pixels([img for _, img in clip])
    per_frame = int(grid[0].prod()) // b.merge**2
    seq = ids(sess.prompter.template.sink)
    for pts, _ in clip:
        seq += (
            ids(time_tag(pts))
            + [b.vision_start]
            + [b.model.config.image_token_id] * per_frame
            + [b.vision_end]
        )
    seq += ids(sess.prompter.template.question(QUESTION))
    input_ids = torch.tensor([seq])
    with torch.no_grad():
        ref = b.model.generate(
            input_ids=input_ids,
            pixel_values=pixels,
            image_grid_thw=grid,
            mm_token_type_ids=(input_ids == b.model.config.image_token_id).int(),
            max_new_tokens=len(gen.logits),
            min_new_tokens=len(gen.logits),
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
            pad_token_id=b.tokenizer.pad_token_id,
        )
    assert gen.token_ids == ref.sequences[0, len(seq) :].tolist()[: len(gen.token_ids)]
    for mine, theirs in zip(gen.logits, ref.logits, strict=True):
        assert torch.allclose(mine, theirs[0].float(), atol=ATOL)


def test_fidelity_qwen_chunk_moved_away_and_back_answers_identically():
    sess = StreamSession(qwen(), "pool:4")
    sess.append(frames(4))
    assert sess.export(0, 3).span < sess.export(0, 3).tokens  # a 2x2 grid shares positions (M-RoPE)
    assert_moved_chunk_answers_identically(qwen(), "pool:4", QUESTION)


def test_qwen_budgets_and_unsupported_topk():
    sess = StreamSession(qwen(), "pool:4")
    recs = sess.append(frames(2, start=3.0))
    tag = len(qwen().tokenizer(time_tag(3.0), add_special_tokens=False)["input_ids"])
    assert recs[0].carriers == 4
    assert recs[0].kv_tokens == tag + 1 + 4 + 1  # tag, <|vision_start|>, carriers, <|vision_end|>
    with pytest.raises(UserError, match="need vision attention"):
        StreamSession(qwen(), "topk:8")


def test_fidelity_qwen_content_keys_undo_mrope():
    x, y = frames(2)
    alone, later = StreamSession(qwen(), "pool:4"), StreamSession(qwen(), "pool:4")
    alone.append([(5.0, x[1])])
    later.append([(0.0, y[1]), (5.0, x[1])])
    a, b = alone.export(0, 0), later.export(1, 1)
    assert not torch.allclose(a.keys[0], b.keys[0], atol=1e-3)
    assert torch.allclose(a.content_keys[0], b.content_keys[0], atol=ATOL)
