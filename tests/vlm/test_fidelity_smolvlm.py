"""SmolVLM2 (pixel shuffle, "Frame from mm:ss:" prompts, 1-D RoPE): the streaming path equals
transformers' own generate() on pixels, in greedy tokens and every step's logits."""

from __future__ import annotations

from functools import lru_cache

import pytest
import torch
from transformers.models.smolvlm.processing_smolvlm import FRAME_TIMESTAMP_MESSAGE

from scenekv.errors import UserError
from scenekv.vlm import CarrierSpec, SamplingParams, StreamSession, load_backend

from support.tiny_model import assert_moved_chunk_answers_identically, frames

QUESTION = "What happened at 00:02?"
ATOL = 1e-4


@lru_cache(maxsize=1)
def smolvlm():
    return load_backend("tiny-random-smolvlm2")


def _reference(sess: StreamSession, clip, n_tokens: int, *, order=None):
    """generate() on what SmolVLM2's processor builds: its image processor's pixels (no splitting),
    and per frame the frame's time text, <fake_token_around_image><global-img>, 64 <image>, <fake...>."""
    b = sess.backend

    def ids(text: str) -> list[int]:
        return b.tokenizer(text, add_special_tokens=False)["input_ids"]

    images = [img for _, img in clip]
    if order is not None:
        images = [images[i] for i in order]
    pixels = b.pixels(images)[None]  # [1 sample, F images, 3, S, S]
    seq = ids(sess.prompter.template.sink)
    for pts, _ in clip:
        image = [b.model.config.image_token_id] * b.native_tokens_per_frame
        seq += ids(b.prompt_format.time_tag(pts)) + [b.fake_id, b.global_id, *image, b.fake_id]
    seq += ids(sess.prompter.template.question(QUESTION))
    with torch.no_grad():
        ref = b.model.generate(
            input_ids=torch.tensor([seq]),
            pixel_values=pixels,
            max_new_tokens=n_tokens,
            min_new_tokens=n_tokens,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
            pad_token_id=b.tokenizer.pad_token_id,
        )
    return ref, len(seq)


def _asked(n: int = 4, tokens: int = 6):
    clip = frames(n)
    sess = StreamSession(smolvlm(), "native")
    sess.append(clip[:1])
    sess.append(clip[1:])
    gen = sess.ask(QUESTION, params=SamplingParams(max_new_tokens=tokens), record_logits=True)
    list(gen)
    return sess, clip, gen


def test_fidelity_smolvlm_streaming_equals_checkpoint_generate_on_pixels():
    sess, clip, gen = _asked()
    ref, prompt_len = _reference(sess, clip, len(gen.logits))
    assert gen.token_ids == ref.sequences[0, prompt_len:].tolist()[: len(gen.token_ids)]
    for step, (mine, theirs) in enumerate(zip(gen.logits, ref.logits, strict=True)):
        assert torch.allclose(mine, theirs[0].float(), atol=ATOL), f"logits differ at step {step}"


def test_fidelity_smolvlm_tolerance_catches_a_frame_order_bug():
    sess, clip, gen = _asked(tokens=1)
    swapped, _ = _reference(sess, clip, 1, order=[0, 2, 1, 3])
    assert (gen.logits[0] - swapped.logits[0][0].float()).abs().max() > 50 * ATOL


def test_fidelity_smolvlm_native_carriers_are_its_image_features():
    b = smolvlm()
    imgs = [img for _, img in frames(3)]
    mine, grid = b.native_carriers(b.encode_frames(imgs))
    assert grid == (8, 8) and mine.shape[1] == 64
    with torch.no_grad():
        theirs = b.model.model.get_image_features(b.pixels(imgs)[None]).pooler_output[0]
    assert torch.allclose(mine.reshape(-1, mine.shape[-1]), theirs, atol=1e-6)


def test_fidelity_smolvlm_chunk_moved_away_and_back_answers_identically():
    sess = StreamSession(smolvlm(), "pool:16")
    sess.append(frames(4))
    chunk = sess.export(0, 3)
    assert chunk.span == chunk.tokens  # 1-D RoPE: one position a token
    assert_moved_chunk_answers_identically(smolvlm(), "pool:16", QUESTION)


def test_smolvlm_segments_use_its_frame_prompt_and_exact_budgets():
    b = smolvlm()
    assert b.prompt_format.time_tag(83.4) == FRAME_TIMESTAMP_MESSAGE.format(timestamp="01:23")
    assert b.prompt_format.time_tag(3725.0) == FRAME_TIMESTAMP_MESSAGE.format(timestamp="62:05")
    for spec, carriers in (("native", 64), ("pool:16", 16), ("mean:1", 1), ("topk:8", 9)):
        recs = StreamSession(b, spec).append(frames(2, start=3.0))
        tag = len(b.prompter.tag_ids(3.0))
        assert CarrierSpec.parse(spec).tokens_per_frame(b) == carriers
        assert [r.carriers for r in recs] == [carriers, carriers]
        assert recs[0].kv_tokens == tag + 2 + carriers + 1  # tag, <fake><global-img>, carriers, <fake>


def test_smolvlm_pool_larger_than_its_grid_is_refused():
    with pytest.raises(UserError, match="64"):
        StreamSession(smolvlm(), "pool:100")


@pytest.mark.parametrize("name", ["tiny-random-smolvlm2", "tiny-random-qwen3-vl"])
def test_smolvlm_and_qwen3_checkpoints_load_by_path_as_their_family(tmp_path, name):
    """A saved checkpoint (weights, tokenizer, image processor) loads by path: dispatched on its
    model_type to the same backend, with the same answers as the built architecture."""
    built = load_backend(name)
    built.model.save_pretrained(tmp_path)
    built.tokenizer.save_pretrained(tmp_path)
    built.processor.save_pretrained(tmp_path)
    loaded = load_backend(str(tmp_path), dtype="float32")  # as built: this CPU may default to bf16
    assert type(loaded) is type(built) and not loaded.is_random
    assert loaded.prompt_format == built.prompt_format
    answers = []
    for backend in (built, loaded):
        sess = StreamSession(backend, "pool:4")
        sess.append(frames(2))
        gen = sess.ask(QUESTION, params=SamplingParams(max_new_tokens=3), record_logits=True)
        list(gen)
        answers.append(gen)
    assert answers[0].token_ids == answers[1].token_ids
    assert torch.allclose(answers[0].logits[0], answers[1].logits[0], atol=ATOL)
