"""SmolVLM2 through transformers' own modeling classes: small enough to run live on a laptop CPU.

One frame = one image through the image path without splitting, as SmolVLM2's own video processor
does: squashed to the vision input (512x512), SigLIP at patch 16 -> 32x32 patches, pixel shuffle by
4 -> an 8x8 grid of 64 tokens, projected into the LLM. Those 64 are ``native`` carriers; ``pool:K``
pools the 8x8 grid (K <= 64). The segment is what the processor writes per video frame:
``\\nFrame from 00:02:<fake_token_around_image><global-img>`` carriers ``<fake_token_around_image>``.
The processor's video intro ("... series of N frames from a H:MM:SS video") is left out: a live
stream knows neither its frame count nor its duration. The language model is Llama with 1-D RoPE,
so stored KV moves exactly as LLaVA-OneVision's does.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import PreTrainedTokenizerBase, SmolVLMForConditionalGeneration

from scenekv.errors import UserError

from .backend import VisionFeatures, VLMBackend, require_default_rope
from .prompt import PromptFormat, system_prompt_for

FAKE_TOKEN, GLOBAL_TOKEN = "<fake_token_around_image>", "<global-img>"


class SmolVLMBackend(VLMBackend):
    prompt_format = PromptFormat(system=system_prompt_for("frame_from"), time_format="frame_from")

    def __init__(
        self,
        model: SmolVLMForConditionalGeneration,
        tokenizer: PreTrainedTokenizerBase,
        *,
        model_id: str,
        image_mean: tuple[float, float, float],
        image_std: tuple[float, float, float],
        is_random: bool,
    ) -> None:
        self.model = model.eval()
        if getattr(tokenizer, "chat_template", None) is None:
            # SmolVLM2 ships its template with the processor, not the tokenizer: use transformers' copy
            from transformers.models.smolvlm.processing_smolvlm import DEFAULT_CHAT_TEMPLATE

            tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.is_random = is_random
        self._lm = model.model.text_model
        vision = model.config.vision_config
        self.image_size = vision.image_size
        self.patches = vision.image_size // vision.patch_size  # per side: 32
        self.scale = model.config.scale_factor
        side = self.patches // self.scale
        self.grid = (side, side)
        from transformers.models.smolvlm.image_processing_pil_smolvlm import SmolVLMImageProcessorPil

        # The video path's sizes: longest edge to S, then squashed to S x S; never split into tiles.
        edge = {"longest_edge": self.image_size}
        self.processor = SmolVLMImageProcessorPil(
            size=edge,
            max_image_size=edge,
            do_image_splitting=False,
            image_mean=list(image_mean),
            image_std=list(image_std),
        )
        ids = tokenizer.convert_tokens_to_ids([FAKE_TOKEN, GLOBAL_TOKEN])
        if any(not isinstance(i, int) or i == tokenizer.unk_token_id for i in ids):
            raise UserError(f"{model_id}: the tokenizer lacks SmolVLM's {FAKE_TOKEN} / {GLOBAL_TOKEN} tokens")
        self.fake_id, self.global_id = ids
        require_default_rope(model.config.text_config)

    @property
    def native_tokens_per_frame(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def token_grid(self) -> tuple[int, int]:
        return self.grid

    def pixels(self, images: list[np.ndarray]) -> torch.Tensor:
        """RGB uint8 frames -> [F, 3, S, S] through the checkpoint's image processor."""
        out = self.processor(
            images=[Image.fromarray(img).convert("RGB") for img in images], return_tensors="pt"
        )
        return out["pixel_values"].flatten(0, 1).to(self.device, self.dtype)

    @torch.inference_mode()
    def encode_frames(self, images: list[np.ndarray], *, need_importance: bool = False) -> VisionFeatures:
        if not images:
            raise ValueError("encode_frames needs at least one frame")
        self.frames_encoded += len(images)
        pixels = self.pixels(images)
        mask = torch.ones(len(images), self.patches, self.patches, dtype=torch.bool, device=self.device)
        out = self.model.model.vision_model(
            pixel_values=pixels, patch_attention_mask=mask, output_hidden_states=need_importance
        )
        tokens = self.model.model.connector(out.last_hidden_state)
        importance = self._attention_received(out.hidden_states) if need_importance else None
        return VisionFeatures(tokens=tokens, grid=self.grid, importance=importance)

    def _attention_received(self, hidden_states: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Mean attention each patch receives in the last encoder layer, summed over the patches that
        pixel shuffle merges into one token (a ``scale`` x ``scale`` block): [F, 64]."""
        encoder = self.model.model.vision_model.encoder
        block = encoder.layers[-1]
        attn = block.self_attn
        x = block.layer_norm1(hidden_states[-2])
        f, n, _ = x.shape
        q = attn.q_proj(x).view(f, n, attn.num_heads, attn.head_dim).transpose(1, 2)
        k = attn.k_proj(x).view(f, n, attn.num_heads, attn.head_dim).transpose(1, 2)
        weights = torch.softmax((q @ k.transpose(-1, -2)).float() * attn.scale, dim=-1)
        received = weights.mean(dim=(1, 2)).view(f, 1, self.patches, self.patches)
        return F.avg_pool2d(received, self.scale).flatten(1) * self.scale**2

    def native_carriers(self, features: VisionFeatures) -> tuple[torch.Tensor, tuple[int, int]]:
        return features.tokens, features.grid

    def frame_segment(
        self, start: int, tag_ids: list[int], carriers: torch.Tensor, grid: tuple[int, int] | None
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """``Frame from mm:ss:`` <fake><global-img> carriers <fake>, at consecutive positions."""
        embeds = torch.cat(
            [
                self.embed_ids([*tag_ids, self.fake_id, self.global_id]),
                carriers.to(self.dtype),
                self.embed_ids([self.fake_id]),
            ]
        )
        return embeds, self.text_positions(start, embeds.shape[0]), start + embeds.shape[0]
