"""The streaming path must compute exactly what transformers computes over the same sequence."""

from __future__ import annotations

import torch

from scenekv.vlm import SamplingParams, rotate_keys, time_tag
from scenekv.vlm.carriers import compress
from scenekv.vlm.kv import cache_tensors

from support.tiny_model import frames, session, tiny

QUESTION = "What happened at 00:02?"
ATOL = 1e-4  # fp32 on CPU; observed differences are ~1e-6


def _one_shot_sequence(sess, clip, question: str) -> torch.Tensor:
    """The whole prompt as one embedding sequence: sink, each frame's tag + carriers, question."""
    b = sess.backend

    def ids(text: str) -> list[int]:
        return b.tokenizer(text, add_special_tokens=False)["input_ids"]

    carriers, _ = compress(sess.spec, b.encode_frames([img for _, img in clip]), b)
    parts = [b.embed_ids(ids(sess.prompter.template.sink))]
    for i, (pts, _) in enumerate(clip):
        parts += [b.embed_ids(ids(time_tag(pts))), carriers[i]]
    parts.append(b.embed_ids(ids(sess.prompter.template.question(question))))
    return torch.cat(parts)[None]


def _generate(seq: torch.Tensor, n: int):
    b = tiny()
    with torch.no_grad():
        return b.model.generate(
            inputs_embeds=seq,
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
            pad_token_id=b.tokenizer.pad_token_id,
        )


def test_fidelity_native_streaming_matches_transformers_generate():
    clip = frames(6)
    sess = session("native")
    for batch in (clip[:1], clip[1:4], clip[4:]):  # frames arrive in uneven batches
        sess.append(batch)
    gen = sess.ask(QUESTION, params=SamplingParams(max_new_tokens=8), record_logits=True)
    list(gen)

    ref = _generate(_one_shot_sequence(sess, clip, QUESTION), len(gen.logits))
    assert gen.token_ids == ref.sequences[0].tolist()[: len(gen.token_ids)]
    for step, (mine, theirs) in enumerate(zip(gen.logits, ref.logits, strict=True)):
        assert torch.allclose(mine, theirs[0].float(), atol=ATOL), f"logits differ at step {step}"


def test_fidelity_tolerance_would_catch_a_position_or_order_bug():
    """Guard against a vacuous comparison: swapping two frames must move logits well past ATOL."""
    clip = frames(4)
    sess = session("native")
    sess.append(clip)
    gen = sess.ask(QUESTION, params=SamplingParams(max_new_tokens=1), record_logits=True)
    list(gen)
    swapped = [clip[0], clip[2], clip[1], clip[3]]
    seq = _one_shot_sequence(
        sess, [(p, img) for (p, _), (_, img) in zip(clip, swapped, strict=True)], QUESTION
    )
    ref = _generate(seq, 1)
    assert (gen.logits[0] - ref.logits[0][0].float()).abs().max() > 50 * ATOL


def test_fidelity_native_carriers_are_the_checkpoints_video_tokens():
    b = tiny()
    imgs = [img for _, img in frames(3)]
    mine, grid = b.native_carriers(b.encode_frames(imgs))
    assert grid == (14, 14)
    with torch.no_grad():
        video = b.model.model.get_video_features(b.preprocess(imgs)[None]).pooler_output[0]
    # transformers' video path: 196 tokens per frame, then one image_newline for the whole video
    assert video.shape[0] == 3 * 196 + 1
    assert torch.equal(mine.reshape(-1, mine.shape[-1]), video[:-1])


def test_fidelity_rerotated_keys_equal_prefill_at_shifted_position():
    b = tiny()
    seq = _one_shot_sequence(session("pool:4"), frames(3), QUESTION)[0]
    n, shift = seq.shape[0], 1000
    at_zero, at_shift = b.new_cache(), b.new_cache()
    b.forward(seq, at_zero, torch.arange(n), logits=False)
    b.forward(seq, at_shift, torch.arange(shift, shift + n), logits=False)
    k0, v0 = cache_tensors(at_zero)
    k1, v1 = cache_tensors(at_shift)
    assert not torch.allclose(k0, k1, atol=1e-2)  # positions really are baked into the keys
    assert torch.allclose(rotate_keys(k0, shift, b.rope_inv_freq()), k1, atol=ATOL)
    assert torch.allclose(v0, v1, atol=ATOL)


def test_fidelity_chunk_moved_away_and_back_answers_identically():
    sess = session("pool:16")
    sess.append(frames(5))
    chunk = sess.export(0, 4)
    params = SamplingParams(max_new_tokens=4)
    direct = sess.ask(QUESTION, chunks=[chunk], params=params, record_logits=True)
    list(direct)
    far = chunk.moved_to(chunk.position + 4321, tiny().rope_inv_freq())
    assert far.position == chunk.position + 4321
    moved = sess.ask(QUESTION, chunks=[far], params=params, record_logits=True)
    list(moved)
    assert moved.token_ids == direct.token_ids
    for a, c in zip(moved.logits, direct.logits, strict=True):
        assert torch.allclose(a, c, atol=ATOL)


def test_fidelity_content_keys_do_not_depend_on_position():
    """Retrieval keys undo RoPE: the same frame prefilled at two positions gets the same layer-0 key
    (layer 0 keys see only the token itself), although its cached keys differ by the rotation."""
    x, y = frames(2)
    alone, later = session("pool:4"), session("pool:4")
    alone.append([(5.0, x[1])])
    later.append([(0.0, y[1]), (5.0, x[1])])
    a, b = alone.export(0, 0), later.export(1, 1)
    assert a.position != b.position
    assert not torch.allclose(a.keys[0], b.keys[0], atol=1e-3)
    assert torch.allclose(a.content_keys[0], b.content_keys[0], atol=ATOL)
    assert a.content_keys.shape == (a.keys.shape[0], a.keys.shape[1], a.keys.shape[3])
