"""LLaVA-OneVision through transformers' own modeling classes.

One frame = one 384x384 image through SigLIP -> 27x27 = 729 tokens -> projector. The checkpoint's
video path then pools the grid bilinearly to 14x14 = 196 tokens per frame (``apply_pooling``), which
we call directly so ``native`` carriers are the model's own video tokens. We do not use
``get_image_features``: it always tiles (anyres), which is the image path, not the video one.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from transformers import LlavaOnevisionForConditionalGeneration, PreTrainedTokenizerBase

from .backend import VisionFeatures, VLMBackend, require_default_rope


class LlavaOnevisionBackend(VLMBackend):
    def __init__(
        self,
        model: LlavaOnevisionForConditionalGeneration,
        tokenizer: PreTrainedTokenizerBase,
        *,
        model_id: str,
        image_mean: tuple[float, float, float],
        image_std: tuple[float, float, float],
        is_random: bool,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.is_random = is_random
        vision = model.config.vision_config
        self.image_size = vision.image_size
        self.grid = vision.image_size // vision.patch_size
        self._mean = torch.tensor(image_mean).view(1, 3, 1, 1)
        self._std = torch.tensor(image_std).view(1, 3, 1, 1)
        self._lm = model.model.language_model
        require_default_rope(model.config.text_config)

    @property
    def native_tokens_per_frame(self) -> int:
        side = (self.grid + 1) // 2  # apply_pooling: ceil(27 / 2) = 14
        return side * side

    @property
    def token_grid(self) -> tuple[int, int]:
        return (self.grid, self.grid)

    def preprocess(self, images: list[np.ndarray]) -> torch.Tensor:
        """RGB uint8 HxWx3 -> normalised [F, 3, S, S], as the checkpoint's video processor does."""
        batch = np.stack(
            [
                np.asarray(
                    Image.fromarray(img)
                    .convert("RGB")
                    .resize((self.image_size, self.image_size), Image.BICUBIC)
                )
                for img in images
            ]
        )
        pixels = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0)
        pixels = (pixels - self._mean) / self._std
        return pixels.to(self.device, self.dtype)

    @torch.inference_mode()
    def encode_frames(self, images: list[np.ndarray], *, need_importance: bool = False) -> VisionFeatures:
        if not images:
            raise ValueError("encode_frames needs at least one frame")
        self.frames_encoded += len(images)
        cfg = self.model.config
        pixels = self.preprocess(images)
        out = self.model.model.vision_tower(pixels, output_hidden_states=True)
        layer = cfg.vision_feature_layer
        if not isinstance(layer, int):
            raise NotImplementedError("multi-layer vision features are not supported")
        layer = layer % len(out.hidden_states)
        selected = out.hidden_states[layer]
        if cfg.vision_feature_select_strategy == "default":
            selected = selected[:, 1:]
        tokens = self.model.model.multi_modal_projector(selected)
        importance = self._attention_received(out.hidden_states, layer) if need_importance else None
        signature = None
        if self.signature_layer is not None:
            signature = out.hidden_states[self.signature_layer]
            signature = signature[:, 1:] if cfg.vision_feature_select_strategy == "default" else signature
        return VisionFeatures(
            tokens=tokens, grid=(self.grid, self.grid), importance=importance, signature_tokens=signature
        )

    def _attention_received(self, hidden_states: tuple[torch.Tensor, ...], layer: int) -> torch.Tensor:
        """Mean attention each patch receives in the encoder layer that produced ``hidden_states[layer]``.

        Recomputed from that layer's own projections, because SDPA does not return attention weights
        and switching the whole tower to eager attention would slow every frame.
        """
        block = self.model.model.vision_tower.encoder.layers[layer - 1]
        attn = block.self_attn
        x = block.layer_norm1(hidden_states[layer - 1])
        f, n, _ = x.shape
        q = attn.q_proj(x).view(f, n, attn.num_heads, attn.head_dim).transpose(1, 2)
        k = attn.k_proj(x).view(f, n, attn.num_heads, attn.head_dim).transpose(1, 2)
        weights = torch.softmax((q @ k.transpose(-1, -2)).float() * attn.scale, dim=-1)
        return weights.mean(dim=(1, 2))  # average over heads and queries -> [F, N]

    @torch.inference_mode()
    def native_carriers(self, features: VisionFeatures) -> tuple[torch.Tensor, tuple[int, int]]:
        side = (self.grid + 1) // 2
        return self.model.model.apply_pooling(features.tokens), (side, side)
