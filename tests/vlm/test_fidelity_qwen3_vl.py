"""Qwen3-VL (interleaved M-RoPE, DeepStack, its own frame timestamps): the streaming path equals
transformers' own generate() on pixels, in greedy tokens and every step's logits."""

from __future__ import annotations

from functools import lru_cache

import pytest
import torch

from scenekv.errors import UserError
from scenekv.vlm import SamplingParams, StreamSession, load_backend

from support.tiny_model import assert_moved_chunk_answers_identically, frames

QUESTION = "What happened at 00:02?"
ATOL = 1e-4


@lru_cache(maxsize=1)
def qwen3():
    return load_backend("tiny-random-qwen3-vl")


def _reference(sess: StreamSession, clip, n_tokens: int, *, order=None, deepstack: bool = True):
    """generate() on the checkpoint's own input: pixels through its processor, image placeholders
    between each frame's ``<t seconds>`` text, positions from its get_rope_index."""
    b = sess.backend

    def ids(text: str) -> list[int]:
        return b.tokenizer(text, add_special_tokens=False)["input_ids"]

    images = [img for _, img in clip]
    if order is not None:
        images = [images[i] for i in order]
    pixels, grid = b.pixels(images)
    per_frame = int(grid[0].prod()) // b.merge**2
    seq = ids(sess.prompter.template.sink)
    for pts, _ in clip:
        image = [b.model.config.image_token_id] * per_frame
        seq += ids(b.prompt_format.time_tag(pts)) + [b.vision_start, *image, b.vision_end]
    seq += ids(sess.prompter.template.question(QUESTION))
    input_ids = torch.tensor([seq])
    saved = b._visual.deepstack_visual_indexes
    if not deepstack:  # the tower emits no DeepStack features: the language model gets none
        b._visual.deepstack_visual_indexes = []
    try:
        with torch.no_grad():
            ref = b.model.generate(
                input_ids=input_ids,
                pixel_values=pixels,
                image_grid_thw=grid,
                mm_token_type_ids=(input_ids == b.model.config.image_token_id).int(),
                max_new_tokens=n_tokens,
                min_new_tokens=n_tokens,
                do_sample=False,
                output_logits=True,
                return_dict_in_generate=True,
                pad_token_id=b.tokenizer.pad_token_id,
            )
    finally:
        b._visual.deepstack_visual_indexes = saved
    return ref, len(seq)


def _asked(carriers: str = "native", n: int = 4, tokens: int = 6):
    clip = frames(n)
    sess = StreamSession(qwen3(), carriers)
    sess.append(clip[:1])
    sess.append(clip[1:])
    gen = sess.ask(QUESTION, params=SamplingParams(max_new_tokens=tokens), record_logits=True)
    list(gen)
    return sess, clip, gen


def test_fidelity_qwen3_streaming_equals_checkpoint_generate_on_pixels():
    sess, clip, gen = _asked()
    ref, prompt_len = _reference(sess, clip, len(gen.logits))
    assert gen.token_ids == ref.sequences[0, prompt_len:].tolist()[: len(gen.token_ids)]
    for step, (mine, theirs) in enumerate(zip(gen.logits, ref.logits, strict=True)):
        assert torch.allclose(mine, theirs[0].float(), atol=ATOL), f"logits differ at step {step}"


def test_fidelity_qwen3_tolerance_catches_frame_order_and_missing_deepstack():
    """The comparison is not vacuous: two frames swapped, or DeepStack left out of the prefill,
    move the logits far past the tolerance."""
    sess, clip, gen = _asked(tokens=1)
    swapped, _ = _reference(sess, clip, 1, order=[0, 2, 1, 3])
    assert (gen.logits[0] - swapped.logits[0][0].float()).abs().max() > 50 * ATOL
    flat, _ = _reference(sess, clip, 1, deepstack=False)
    assert (gen.logits[0] - flat.logits[0][0].float()).abs().max() > 50 * ATOL


def test_fidelity_qwen3_chunk_moved_away_and_back_answers_identically():
    sess = StreamSession(qwen3(), "pool:4")
    sess.append(frames(4))
    chunk = sess.export(0, 3)
    assert chunk.span < chunk.tokens  # a frame's 2x2 grid shares positions under M-RoPE
    assert_moved_chunk_answers_identically(qwen3(), "pool:4", QUESTION)


def test_fidelity_qwen3_content_keys_undo_interleaved_mrope():
    """Retrieval keys are the keys before RoPE: undoing it needs the right axis for every frequency
    pair (interleaved t, h, w), else the tokens of a frame's grid keep a residual rotation."""
    b = qwen3()
    x, y = frames(2)
    captured: list[torch.Tensor] = []
    layer0 = b._lm.layers[0].self_attn.k_norm  # [1, T, kv_heads, head_dim]: normed, not yet rotated
    hook = layer0.register_forward_hook(lambda _m, _i, out: captured.append(out[0].detach().clone()))
    try:
        alone = StreamSession(b, "pool:4")
        alone.append([(5.0, x[1])])
    finally:
        hook.remove()
    chunk = alone.export(0, 0)
    before_rope = captured[-1][-chunk.tokens :].float().mean(dim=0)  # the frame's segment, sink excluded
    assert torch.allclose(chunk.content_keys[0], before_rope, atol=ATOL)
    later = StreamSession(b, "pool:4")
    later.append([(0.0, y[1]), (5.0, x[1])])
    moved = later.export(1, 1)
    assert not torch.allclose(chunk.keys[0], moved.keys[0], atol=1e-3)
    assert torch.allclose(chunk.content_keys[0], moved.content_keys[0], atol=ATOL)


def test_qwen3_segments_use_its_own_timestamps_and_exact_budgets():
    b = qwen3()
    sess = StreamSession(b, "pool:4")
    recs = sess.append(frames(2, start=3.0))
    tag = b.tokenizer("<3.0 seconds>", add_special_tokens=False)["input_ids"]
    assert b.prompter.tag_ids(3.0) == tag
    assert recs[0].carriers == 4
    assert recs[0].kv_tokens == len(tag) + 1 + 4 + 1  # tag, <|vision_start|>, carriers, <|vision_end|>
    with pytest.raises(UserError, match="need vision attention"):
        StreamSession(b, "topk:8")
