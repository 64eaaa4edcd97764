"""What a model backend gives the rest of SceneKV.

A backend wraps one transformers vision-language model and exposes only the pieces the streaming
path needs: batched vision encoding into the LLM's embedding space, token embedding, a language
model step on an explicit KV cache at explicit positions, and the RoPE frequencies that make stored
KV movable. Everything above (carriers, sessions, memory, QA) is written against this class, so a
second architecture (Qwen2.5-VL) is a new subclass, not a fork of the pipeline.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from .prompt import Prompter, PromptFormat


@dataclass
class VisionFeatures:
    """A batch of frames after the vision tower and projector, before any compression."""

    tokens: torch.Tensor  # [F, h*w, D]: projected tokens in the LLM's embedding space, raster order
    grid: tuple[int, int]  # (h, w) of the token grid (27x27 for SigLIP at 384 px, patch 14)
    importance: torch.Tensor | None = None  # [F, h*w]: attention each token receives
    # [F, h*w, L*D]: per-token features for the first L decoder layers (Qwen3-VL's DeepStack), or None
    deepstack: torch.Tensor | None = None
    # [F, h*w, D']: what the scene signature reads when the checkpoint names another tower layer
    signature_tokens: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def split(self, sizes: list[int]) -> list[VisionFeatures]:
        """One batch's features cut back into the callers' frames (``sizes`` frames each, in order)."""
        out, start = [], 0
        for n in sizes:
            part = slice(start, start + n)
            out.append(
                VisionFeatures(
                    self.tokens[part],
                    self.grid,
                    None if self.importance is None else self.importance[part],
                    None if self.deepstack is None else self.deepstack[part],
                    None if self.signature_tokens is None else self.signature_tokens[part],
                )
            )
            start += n
        return out

    @property
    def carrier_source(self) -> torch.Tensor:
        """What carriers are cut from: the tokens, with each token's DeepStack features beside it.

        Pooling, means and top-k picks act per channel, so compressing the two side by side gives
        each carrier the DeepStack features of exactly the tokens it stands for.
        """
        if self.deepstack is None:
            return self.tokens
        return torch.cat([self.tokens, self.deepstack], dim=-1)


@dataclass(frozen=True)
class KVGeometry:
    """Shapes of one token's KV, for budgets and the chunk header."""

    layers: int
    kv_heads: int
    head_dim: int
    dtype: torch.dtype

    @property
    def bytes_per_token(self) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * torch.finfo(self.dtype).bits // 8


def require_default_rope(text_config) -> None:
    """Refuse a language model whose RoPE is not the default 1-D rotation: moving a chunk's KV
    (vlm/kv.py) rotates its keys by the position delta, exact for that rotation alone."""
    rope_type = text_config.rope_parameters.get("rope_type", "default")
    if rope_type != "default":
        raise NotImplementedError(f"RoPE type {rope_type!r}: KV moves assume default RoPE")


class VLMBackend(ABC):
    model_id: str
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    is_random: bool  # random weights: answers are placeholders, say so to the user
    frames_encoded: int = 0  # frames through the vision tower, ever: proves QA never re-encodes video
    prompt_format: PromptFormat = PromptFormat()  # the layout the checkpoint reads (vlm/prompt.py)
    world_only: bool = False  # trained only on SceneKV's synthetic world (say so to the user)
    # the vision tower layer (hidden_states index) scene signatures read; None: the projected tokens
    signature_layer: int | None = None
    # which weights under model_id (a retrained checkpoint keeps its name); None: not known
    revision: str | None = None

    @property
    def prompter(self) -> Prompter:
        """Token ids of the sink, time tags and questions in this checkpoint's layout (built once)."""
        p = self.__dict__.get("_prompter")
        if p is None or p.format != self.prompt_format:
            p = self.__dict__["_prompter"] = Prompter(self.tokenizer, self.prompt_format)
        return p

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    _lm: torch.nn.Module  # the language model inside ``model`` (subclasses set it)

    @property
    def geometry(self) -> KVGeometry:
        text = self.model.config.get_text_config()
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        return KVGeometry(text.num_hidden_layers, text.num_key_value_heads, head_dim, self.dtype)

    @property
    @abstractmethod
    def native_tokens_per_frame(self) -> int: ...

    @property
    def token_grid(self) -> tuple[int, int] | None:
        """The (h, w) grid carriers are cut from, where it does not depend on the frame (else None)."""
        return None

    @property
    def supports_importance(self) -> bool:
        """Whether encode_frames can return attention importance (needed by topk carriers)."""
        return True

    @abstractmethod
    def encode_frames(self, images: list[np.ndarray], *, need_importance: bool = False) -> VisionFeatures:
        """Run the vision tower and projector on RGB uint8 frames in one batch."""

    @abstractmethod
    def native_carriers(self, features: VisionFeatures) -> tuple[torch.Tensor, tuple[int, int]]:
        """Exactly the tokens the checkpoint's own path produces per frame: [F, n, D], and their grid."""

    @torch.inference_mode()
    def embed_ids(self, ids: list[int]) -> torch.Tensor:
        """Token embeddings [len(ids), D] for text pieces of the prompt."""
        return self.model.get_input_embeddings()(torch.tensor(ids, device=self.device))

    def new_cache(self) -> DynamicCache:
        return DynamicCache(config=self.model.config.get_text_config())

    def _position_ids(self, positions: torch.Tensor) -> torch.Tensor:
        return positions.view(1, -1)

    def _lm_inputs(self, embeds: torch.Tensor) -> dict:
        """Keyword inputs of the language model for ``embeds`` (a backend with side inputs adds them)."""
        return {"inputs_embeds": embeds.unsqueeze(0).to(self.dtype)}

    @property
    def _cache_kwarg(self) -> str:
        """``cache`` where the language model takes it (transformers renames ``past_key_values`` model
        by model from 5.2x on and warns on the old name), else ``past_key_values``."""
        name = self.__dict__.get("_cache_name")
        if name is None:
            params = inspect.signature(self._lm.forward).parameters
            name = self.__dict__["_cache_name"] = "cache" if "cache" in params else "past_key_values"
        return name

    @torch.inference_mode()
    def forward(
        self,
        embeds: torch.Tensor,
        cache: DynamicCache,
        positions: torch.Tensor,
        *,
        logits: bool,
        visible: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """Run the language model on ``embeds`` [T, D] at ``positions``, appending to ``cache``.

        ``positions`` is [T] for 1-D RoPE or [3, T] for M-RoPE (from text_positions / frame_segment).
        ``visible``: [T, cached + T] booleans, which keys each new token attends to (default: all
        before it). Returns the logits of the last position when ``logits`` is set (prefill of
        video needs none).
        """
        hidden = self.forward_hidden(embeds, cache, positions, visible=visible)
        if not logits:
            return None
        return self.model.lm_head(hidden[-1:]).float()[0]

    @torch.inference_mode()
    def forward_hidden(
        self, embeds: torch.Tensor, cache, positions: torch.Tensor, *, visible: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The language model's last hidden states [T, D] for ``embeds`` [T, D]: every pass of the
        language model goes through here (``forward``, and a packed forward of many sequences in
        vlm/batch_decode.py, whose cache object routes each sequence's keys)."""
        mask = None
        if visible is not None:  # additive, as every attention implementation reads a 4-D mask
            mask = torch.zeros(visible.shape, dtype=self.dtype, device=self.device)
            mask = mask.masked_fill(~visible.to(self.device), torch.finfo(self.dtype).min)[None, None]
        out = self._lm(
            **self._lm_inputs(embeds),
            attention_mask=mask,
            position_ids=self._position_ids(positions).to(self.device),
            **{self._cache_kwarg: cache},
            use_cache=True,
        )
        return out.last_hidden_state[0]

    def text_positions(self, start: int, n: int) -> torch.Tensor:
        return torch.arange(start, start + n)

    def frame_segment(
        self, start: int, tag_ids: list[int], carriers: torch.Tensor, grid: tuple[int, int] | None
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Embeddings, positions and the next free position for one frame: time tag, then carriers
        (or carriers, then the tag, where the checkpoint was trained so: ``prompt_format.tag_after``).

        ``grid`` is the carriers' spatial layout (None for an unordered set such as topk); 1-D RoPE
        ignores it, M-RoPE backends place the carriers on it.
        """
        parts = [self.embed_ids(tag_ids), carriers.to(self.dtype)]
        embeds = torch.cat(parts[::-1] if self.prompt_format.tag_after else parts)
        return embeds, self.text_positions(start, embeds.shape[0]), start + embeds.shape[0]

    def rope_inv_freq(self) -> torch.Tensor:
        """Per-pair RoPE frequencies, for moving cached keys to other positions."""
        return self._lm.rotary_emb.inv_freq.float()

    def rope_angles(self, positions: torch.Tensor) -> torch.Tensor:
        """Rotation angle of every (token, frequency pair) for ``positions`` [T]: [T, head_dim/2]."""
        return positions.double().view(-1, 1) * self.rope_inv_freq().double().view(1, -1)

    @torch.inference_mode()
    def question_queries(
        self, cache: DynamicCache, embeds: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor:
        """Mean pre-RoPE query of the question's tokens, per layer and KV head: [layers, kv_heads, head_dim].

        The question is run on ``cache`` (which it extends; pass a throwaway copy). Queries are taken
        before RoPE so they compare with position-free chunk keys (KVChunk.content_keys): relevance
        without the distance penalty RoPE would add between a question and old video.
        """
        geo = self.geometry
        captured: list[torch.Tensor] = []
        # The query as keys are cached before RoPE: after the per-head norm where the model has one
        # (Qwen3), so questions and content keys are compared in the same space.
        hooks = [
            getattr(layer.self_attn, "q_norm", layer.self_attn.q_proj).register_forward_hook(
                lambda _m, _i, out: captured.append(out[0].float().reshape(out.shape[1], -1))
            )
            for layer in self._lm.layers
        ]
        try:
            self.forward(embeds, cache, positions, logits=False)
        finally:
            for h in hooks:
                h.remove()
        q = torch.stack(captured)  # [layers, T, heads * head_dim]
        heads = q.shape[-1] // geo.head_dim
        q = q.view(geo.layers, -1, geo.kv_heads, heads // geo.kv_heads, geo.head_dim)
        return q.mean(dim=(1, 3))

    @property
    def eos_token_ids(self) -> set[int]:
        """The tokenizer's EOS and the chat turn ends the families use (ChatML's, SmolVLM2's)."""
        ids = {self.tokenizer.eos_token_id}
        for end in ("<|im_end|>", "<end_of_utterance>"):
            tid = self.tokenizer.convert_tokens_to_ids(end)
            if isinstance(tid, int) and tid != self.tokenizer.unk_token_id:
                ids.add(tid)
        return {i for i in ids if i is not None}
