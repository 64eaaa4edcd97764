"""Answers decoded together in one packed forward equal each answer decoded alone: same greedy
tokens, same logits (fp32), whatever their context lengths, prompt lengths and finishing steps."""

from __future__ import annotations

import threading
from functools import lru_cache

import pytest
import torch

from scenekv.vlm import SamplingParams, StreamSession, load_backend
from scenekv.vlm.batch_decode import step_generations

from support.tiny_model import frames, session


@lru_cache(maxsize=2)
def _backend(model: str):
    return load_backend(model)


ATOL = 1e-4  # fp32 on CPU


def _asks(sess, cancel: threading.Event | None = None):
    """Four answers over different contexts and questions (their caches and prompts all differ)."""
    chunks = [sess.export(0, 1), sess.export(0, 5), sess.export(2, 3), sess.export(4, 5)]
    questions = ["What happened at 00:02?", "Describe the scene.", "What colour is it?", "Anything new?"]
    lengths = [6, 3, 8, 1]  # one finishes after one token, another after three, ...
    return [
        sess.ask(
            q,
            chunks=[c],
            params=SamplingParams(max_new_tokens=n),
            record_logits=True,
            cancel=cancel if i == 2 else None,
        )
        for i, (q, c, n) in enumerate(zip(questions, chunks, lengths, strict=True))
    ]


def _together(backend, gens, budget: int | None) -> list[str]:
    texts = [""] * len(gens)
    steps = 0
    while any(not g.finished for g in gens):
        live = [i for i, g in enumerate(gens) if not g.finished]
        deltas = step_generations(backend, [gens[i] for i in live], [budget] * len(live))
        for i, d in zip(live, deltas, strict=True):
            texts[i] += d
        steps += 1
        assert steps < 200
    return texts


@pytest.mark.parametrize("budget", [None, 3])  # whole prompts, or prompts run 3 tokens a step
@pytest.mark.parametrize("model", ["tiny-random-llava-onevision", "tiny-random-qwen2.5-vl"])  # 1-D, M-RoPE
def test_answers_decoded_together_equal_each_decoded_alone(model, budget):
    sess = StreamSession(_backend(model), "pool:16")
    sess.append(frames(6))
    alone = _asks(sess)
    alone_texts = ["".join(g) for g in alone]
    together = _asks(sess)
    texts = _together(sess.backend, together, budget)
    assert [len(g.token_ids) for g in alone] == [6, 3, 8, 1]  # they finish at different steps
    for a, b, ta, tb in zip(alone, together, alone_texts, texts, strict=True):
        assert b.token_ids == a.token_ids
        assert b.finish_reason == a.finish_reason
        assert tb == ta == b.text
        assert len(b.logits) == len(a.logits)
        for x, y in zip(a.logits, b.logits, strict=True):
            assert torch.allclose(x, y, atol=ATOL)


def test_a_cancelled_answer_stops_and_the_others_finish():
    sess = session("pool:16")
    sess.append(frames(6))
    alone = _asks(sess)
    for g in alone:
        list(g)
    cancel = threading.Event()
    together = _asks(sess, cancel)
    live = list(together)
    step_generations(sess.backend, live)  # prompts run, first tokens picked
    cancel.set()
    _together(sess.backend, together, None)
    assert together[2].finish_reason == "cancelled"
    assert len(together[2].token_ids) == 1 < len(alone[2].token_ids)  # stopped at the next step
    for i in (0, 1, 3):
        assert together[i].token_ids == alone[i].token_ids
