"""The world model before training: a small LLaVA-OneVision, its tokenizer, and its wired first layer.

The real ``LlavaOnevisionForConditionalGeneration`` class at LLaVA-OV's geometry (SigLIP at 384 px,
patch 14 -> 27x27 tokens, its own 2x2 pooling to 196 native video tokens, Qwen2 language model), in
towers narrow enough to train on a 2-core CPU, so that SceneKV's serving path runs unchanged on it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from scenekv.world.questions import tokenizer_corpus

if TYPE_CHECKING:
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        PreTrainedTokenizerFast,
    )

    from scenekv.vlm.llava_onevision import LlavaOnevisionBackend


def world_model_config(vocab_size: int) -> LlavaOnevisionConfig:
    """LLaVA-OneVision's geometry (384 px, patch 14, 27x27 -> 196 native) in narrow, shallow towers."""
    from scenekv.vlm.configs import _llava_ov

    return _llava_ov(
        vision={
            "hidden_size": 96,
            "intermediate_size": 256,
            "num_hidden_layers": 3,
            "num_attention_heads": 4,
        },
        text={
            "hidden_size": 128,
            "intermediate_size": 512,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10_000.0},
        },
        vocab_size=vocab_size,
    )


def build_world_tokenizer(vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """Byte-level BPE whose numbers split into pairs of digits: ``05:41`` is ``05`` ``:`` ``41``."""
    from tokenizers import Regex, pre_tokenizers

    from scenekv.vlm.tokenizer import train_chat_tokenizer

    digits_in_pairs = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\d\d?"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    return train_chat_tokenizer(tokenizer_corpus() * 3, vocab_size=vocab_size, pre_tokenizer=digits_in_pairs)


ORIENTATIONS = 6
# SceneTiling reads hidden_states[1] (scenekv.json): frozen layer 0's output is local, so a
# moving object changes only the patches it covers. The last layer's attention spreads the object
# over every token: consecutive frames of one scene fell to cosine 0.4 and SceneTiling cut a held-out
# 150 s video's 7 scenes into 15 (docs/benchmarks.md); from layer 0's output it found the 7.
SIGNATURE_LAYER = 1


def init_edge_energy(model: LlavaOnevisionForConditionalGeneration, orientations: int = ORIENTATIONS) -> None:
    """Start the tower as an edge-orientation meter (``new_world_model`` then keeps it frozen).

    A shape here differs from another only in its outline's orientations (a square's are horizontal
    and vertical, a triangle's two diagonals and a base, a circle's all of them), and a tower this
    small trained from random weights never found that in minutes (shape at chance, however it was
    supervised). Measured here (docs/benchmarks.md): the squared responses of these edge filters,
    summed per orientation over a frame's patches, name held-out shapes 94-96% right through a small
    classifier, nothing else learnt. So the tower starts out computing a version of that:

    - the patch embedding holds each channel's patch mean and oriented edge filters (Gabor, both
      phases, zero-mean: a solid patch gives none) per colour channel;
    - layer 0's MLP turns each filter's response into its magnitude (``gelu(z) + gelu(-z)``) and
      adds them up per orientation into ``orientations`` residual dimensions that nothing else
      writes at first (no attention output, no other MLP unit, no position embedding there);
    - the frame's mean token then carries its edge-orientation histogram, which the projector and
      the probes read, and the language model after them.
    """
    tower = model.model.vision_tower
    conv = tower.embeddings.patch_embedding
    k = conv.kernel_size[0]
    ys, xs = torch.meshgrid(torch.arange(k) - (k - 1) / 2, torch.arange(k) - (k - 1) / 2, indexing="ij")
    envelope = torch.exp(-(xs**2 + ys**2) / (2 * (k / 3.5) ** 2))
    filters = []  # (orientation, filter)
    for i in range(orientations):
        theta = math.pi * i / orientations
        u = xs * math.cos(theta) + ys * math.sin(theta)
        for phase in (torch.sin, torch.cos):
            g = envelope * phase(2 * math.pi * u / k)
            g = g - g.mean()
            filters.append((i, 0.5 * g / g.norm()))
    layers = tower.encoder.layers
    with torch.no_grad():
        w = conv.weight  # [out, 3, k, k]
        row, edge_rows = 0, []  # edge_rows: (residual dim, orientation)
        for c in range(3):
            w[row].zero_()
            w[row, c] = 2.0 / (k * k)  # the patch's mean in channel c
            row += 1
            for i, g in filters:
                w[row].zero_()
                w[row, c] = g
                edge_rows.append((row, i))
                row += 1
        energy = list(range(row, row + orientations))  # where the per-orientation energy goes
        w[row : row + orientations].zero_()
        fixed = row + orientations + 3
        for c in range(3):  # minus each patch mean: the fixed dimensions of a solid patch sum to 0
            w[row + orientations + c].zero_()
            w[row + orientations + c, c] = -2.0 / (k * k)
        # A LayerNorm subtracts a token's mean over its dimensions. Where a solid patch's token sums
        # to zero, its edge dimensions stay exactly zero through that (no energy from solid areas):
        # the random filters, the position embedding and layer 0's attention output sum to zero.
        w[fixed:] -= w[fixed:].mean(dim=0, keepdim=True)
        conv.bias.zero_()
        pos = tower.embeddings.position_embedding.weight
        pos[:, :fixed].zero_()
        pos[:, fixed:] -= pos[:, fixed:].mean(dim=1, keepdim=True)
        out = layers[0].self_attn.out_proj
        out.weight[fixed:] -= out.weight[fixed:].mean(dim=0, keepdim=True)
        out.bias[fixed:] -= out.bias[fixed:].mean()
        for layer in layers:  # nothing writes the filters' or the energy's dimensions at first
            layer.self_attn.out_proj.weight[:fixed].zero_()
            layer.self_attn.out_proj.bias[:fixed].zero_()
            layer.mlp.fc2.weight[:fixed].zero_()
            layer.mlp.fc2.bias[:fixed].zero_()
        fc1, fc2 = layers[0].mlp.fc1, layers[0].mlp.fc2
        for n, (dim, i) in enumerate(edge_rows):
            for sign, unit in ((1.0, 2 * n), (-1.0, 2 * n + 1)):  # gelu(z) + gelu(-z) ~ |z|
                fc1.weight[unit].zero_()
                fc1.weight[unit, dim] = sign
                fc1.bias[unit] = 0.0
                fc2.weight[:, unit].zero_()
                fc2.weight[energy[i], unit] = 1.0


def new_world_model() -> tuple[
    LlavaOnevisionForConditionalGeneration, PreTrainedTokenizerFast, LlavaOnevisionBackend
]:
    """The untrained model (drawn from torch's global RNG: seed it first), its tokenizer, and the
    backend SceneKV serves it with (whose preprocessing the training data copies)."""
    from transformers import LlavaOnevisionForConditionalGeneration

    from scenekv.vlm.llava_onevision import LlavaOnevisionBackend
    from scenekv.vlm.loading import SIGLIP_MEAN_STD

    tokenizer = build_world_tokenizer()
    config = world_model_config(len(tokenizer))
    net = LlavaOnevisionForConditionalGeneration._from_config(config, dtype=torch.float32)
    init_edge_energy(net)
    tower = net.model.vision_tower
    for p in [*tower.embeddings.parameters(), *tower.encoder.layers[0].parameters()]:
        p.requires_grad_(False)  # trained, the wired layer 0 lost edge orientation (shape 28 % vs 81 %)
    backend = LlavaOnevisionBackend(
        net,
        tokenizer,
        model_id="scenekv-world",
        image_mean=SIGLIP_MEAN_STD[0],
        image_std=SIGLIP_MEAN_STD[1],
        is_random=False,
    )
    return net, tokenizer, backend
