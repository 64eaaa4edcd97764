"""Stage 2, language: the language model learns to read banked carriers laid out as SceneKV's stream
KV lays them out and to answer in the world's words.

The vision half is frozen and every frame was encoded once (``encode_bank``), so a step costs only
the language model. Sequences follow ``vlm/prompt.py``: the sink, per frame its carriers then its
time tag, then the question (with the anchor's frame tag, as the QA engine writes it) and the answer.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from scenekv.vlm.prompt import Prompter, PromptFormat
from scenekv.world.data import BankScene
from scenekv.world.questions import QA, Context, make_context, make_question
from scenekv.world.recipe import TrainConfig, cosine_schedule

if TYPE_CHECKING:
    from transformers import DynamicCache, LlavaOnevisionForConditionalGeneration, PreTrainedTokenizerFast


class SequenceBuilder:
    """Embeddings of a context and of its questions, in the service's layout (vlm/prompt.py):
    sink, then per frame its carriers and its time tag, then the question and the answer."""

    def __init__(
        self,
        model: LlavaOnevisionForConditionalGeneration,
        tokenizer: PreTrainedTokenizerFast,
        fmt: PromptFormat,
        bank: dict[str, torch.Tensor],
    ) -> None:
        self.model, self.bank = model, bank
        self.prompter = Prompter(tokenizer, fmt)
        self.embed = model.get_input_embeddings()
        self.im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self._tags: dict[float, list[int]] = {}

    def tag(self, pts: float) -> list[int]:
        ids = self._tags.get(pts)
        if ids is None:
            ids = self._tags[pts] = self.prompter.tag_ids(pts)
        return ids

    def context(self, c: Context) -> torch.Tensor:
        carriers = self.bank[c.carriers]
        ids: list[int] = list(self.prompter.sink_ids)
        slots: list[tuple[int, int]] = []  # (where in the sequence, bank row) of each frame's carriers
        n_car = carriers.shape[1]
        for row, pts, _ in c.frames:
            slots.append((len(ids), row))
            ids += [0] * n_car + self.tag(pts)
        embeds = self.embed(torch.tensor(ids))
        rows = torch.tensor([r for _, r in slots])
        where = torch.tensor([w for w, _ in slots]).view(-1, 1) + torch.arange(n_car).view(1, -1)
        embeds = embeds.index_put((where.flatten(),), carriers[rows].flatten(0, 1))
        return embeds

    def question(self, qa: QA, *, with_answer: bool = True) -> tuple[list[int], list[int]]:
        if qa.check:
            q = self.prompter.check_ids(qa.question)
        else:
            q = self.prompter.question_ids(qa.question, qa.anchor_pts)
        a = self.prompter.ids(qa.answer) + [self.im_end] if with_answer else []
        return q, a


def lm_forward(
    model: LlavaOnevisionForConditionalGeneration,
    embeds: torch.Tensor,
    positions: torch.Tensor,
    cache: DynamicCache | None = None,
) -> torch.Tensor:
    """The language model's last hidden states (filling ``cache`` when given)."""
    lm = model.model.language_model
    out = lm(inputs_embeds=embeds, position_ids=positions, past_key_values=cache, use_cache=cache is not None)
    return out.last_hidden_state


def context_loss(
    model: LlavaOnevisionForConditionalGeneration,
    builder: SequenceBuilder,
    c: Context,
    qas: list[QA],
    gap: int,
) -> torch.Tensor:
    """One forward of the context, then all its questions at once on copies of its KV.

    Questions are right-padded: attention is causal, so no real token ever sees a pad.
    """
    from transformers import DynamicCache

    ctx = builder.context(c)
    n = ctx.shape[0]
    sink = len(builder.prompter.sink_ids)
    positions = torch.arange(n)
    positions[sink:] += gap
    cache = DynamicCache(config=model.config.text_config)
    lm_forward(model, ctx.unsqueeze(0), positions.unsqueeze(0), cache)
    for layer in cache.layers:
        layer.keys = layer.keys.expand(len(qas), -1, -1, -1)
        layer.values = layer.values.expand(len(qas), -1, -1, -1)
    seqs = [builder.question(qa) for qa in qas]
    m = max(len(q) + len(a) for q, a in seqs)
    ids = torch.zeros(len(qas), m, dtype=torch.long)
    targets = torch.full((len(qas), m), -100)
    for i, (q, a) in enumerate(seqs):
        ids[i, : len(q) + len(a)] = torch.tensor(q + a)
        targets[i, len(q) - 1 : len(q) + len(a) - 1] = torch.tensor(a)
    start = int(positions[-1]) + 1
    qpos = torch.arange(start, start + m).expand(len(qas), m)
    hidden = lm_forward(model, builder.embed(ids), qpos, cache)
    sel = targets != -100
    return F.cross_entropy(model.lm_head(hidden[sel]), targets[sel])


QUESTIONS_PER_CONTEXT = 8


def train_language(
    model: LlavaOnevisionForConditionalGeneration,
    builder: SequenceBuilder,
    scenes: list[BankScene],
    cfg: TrainConfig,
    report: Callable[[str], None],
) -> list[float]:
    """Train the language model alone (vision frozen) on contexts of banked scenes; the loss per step."""
    for p in model.model.vision_tower.parameters():
        p.requires_grad_(False)
    for p in model.model.multi_modal_projector.parameters():
        p.requires_grad_(False)
    params = list(model.model.language_model.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lm_lr, weight_decay=0.01, betas=(0.9, 0.98))
    sched = cosine_schedule(opt, cfg.lm_steps)
    rng = random.Random(cfg.seed + 2)
    losses = []
    model.train()
    for step in range(cfg.lm_steps):
        opt.zero_grad()
        total = 0.0
        for _ in range(cfg.lm_batch):
            c = make_context(rng, scenes, cfg.max_context_tokens)
            qas = [make_question(rng, c) for _ in range(QUESTIONS_PER_CONTEXT)]
            gap = rng.choice([0, 0, rng.randint(1, 20_000)])  # frames prefilled far from the sink
            loss = context_loss(model, builder, c, qas, gap) / cfg.lm_batch
            loss.backward()
            total += loss.item()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(total)
        if step % 50 == 0 or step == cfg.lm_steps - 1:
            report(f"language step {step}/{cfg.lm_steps} loss {np.mean(losses[-50:]):.4f}")
    model.eval()
    return losses


@torch.no_grad()
def greedy(
    model: LlavaOnevisionForConditionalGeneration,
    builder: SequenceBuilder,
    c: Context,
    qa: QA,
    max_new: int = 16,
) -> str:
    """The model's answer to ``qa`` after context ``c``, decoded greedily up to ``<|im_end|>``."""
    q, _ = builder.question(qa, with_answer=False)
    embeds = torch.cat([builder.context(c), builder.embed(torch.tensor(q))])
    positions = torch.arange(embeds.shape[0])
    out: list[int] = []
    for _ in range(max_new):
        hidden = lm_forward(model, embeds.unsqueeze(0), positions.unsqueeze(0))
        nxt = int(model.lm_head(hidden[0, -1]).argmax())
        if nxt == builder.im_end:
            break
        out.append(nxt)
        embeds = torch.cat([embeds, builder.embed(torch.tensor([nxt]))])
        positions = torch.arange(embeds.shape[0])
    return builder.prompter.tokenizer.decode(out).strip()


def evaluate(
    model: LlavaOnevisionForConditionalGeneration,
    builder: SequenceBuilder,
    scenes: list[BankScene],
    seed: int,
    n: int,
    max_tokens: int,
) -> dict:
    """Greedy exact-match accuracy per question kind and carriers, on contexts of held-out videos'
    scenes (the bank path; the service path is measured by the tests and SceneKV-Bench)."""
    rng = random.Random(seed)
    right: dict[str, list[int]] = {}
    for _ in range(n):
        c = make_context(rng, scenes, max_tokens)
        qa = make_question(rng, c)
        got = int(greedy(model, builder, c, qa) == qa.answer)
        right.setdefault(qa.kind, []).append(got)
        right.setdefault(c.carriers, []).append(got)
    return {k: round(float(np.mean(v)), 3) for k, v in sorted(right.items())} | {"n": n}
