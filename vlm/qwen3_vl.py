"""Qwen3-VL through transformers' own modeling classes: Qwen2.5-VL's layout plus two changes.

Each frame goes through the image path as one image, as for Qwen2.5-VL (vlm/qwen2_5_vl.py), and its
segment is ``<3.0 seconds><|vision_start|> carriers <|vision_end|>``: the time text Qwen3-VL's own
processor writes before each video frame, so a real checkpoint reads the time as it was trained to.

- **DeepStack**: the vision tower also emits features of a few intermediate layers, which the
  language model adds to the frame's token states after its first decoder layers. We carry them
  beside each carrier (``VisionFeatures.deepstack``; compression treats them like extra channels) and
  prefill a segment with them at the frame's own positions. Text rows get zeros: adding zero is exact,
  so one forward covers a batch of segments.
- **Interleaved M-RoPE**: frequency pairs take their axis in turn (t, h, w, t, h, w, ...) instead of
  in three blocks. A KV move still shifts all three axes by the same amount, so only the map from
  pair to axis (``rope_angles``) differs.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase, Qwen3VLForConditionalGeneration

from .backend import VisionFeatures
from .prompt import PromptFormat, system_prompt_for
from .qwen2_5_vl import Qwen25VLBackend

# 512x512 -> 16x16 merged tokens of 32 px: the same 256 tokens a frame as Qwen2.5-VL's 448x448 budget.
DEFAULT_MAX_PIXELS = 512 * 512


class Qwen3VLBackend(Qwen25VLBackend):
    prompt_format = PromptFormat(system=system_prompt_for("qwen3"), time_format="qwen3")

    def __init__(
        self,
        model: Qwen3VLForConditionalGeneration,
        tokenizer: PreTrainedTokenizerBase,
        *,
        model_id: str,
        image_mean: tuple[float, float, float],
        image_std: tuple[float, float, float],
        is_random: bool,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        super().__init__(
            model,
            tokenizer,
            model_id=model_id,
            image_mean=image_mean,
            image_std=image_std,
            is_random=is_random,
            max_pixels=max_pixels,
        )
        self.deepstack_layers = len(model.config.vision_config.deepstack_visual_indexes)
        self.hidden = model.config.text_config.hidden_size

    @torch.inference_mode()
    def encode_frames(self, images: list[np.ndarray], *, need_importance: bool = False) -> VisionFeatures:
        if not images:
            raise ValueError("encode_frames needs at least one frame")
        if need_importance:
            raise NotImplementedError("attention importance is not implemented for Qwen3-VL")
        self.frames_encoded += len(images)
        pixels, grid_thw = self.pixels(images)
        out = self._visual(pixels, grid_thw=grid_thw)
        _, gh, gw = (int(v) for v in grid_thw[0])
        grid = (gh // self.merge, gw // self.merge)
        self._last_grid = grid
        f, n = len(images), grid[0] * grid[1]
        deep = (
            torch.cat(list(out.deepstack_features), dim=-1).view(f, n, -1) if self.deepstack_layers else None
        )
        return VisionFeatures(tokens=out.pooler_output.view(f, n, -1), grid=grid, deepstack=deep)

    def native_carriers(self, features: VisionFeatures) -> tuple[torch.Tensor, tuple[int, int]]:
        return features.carrier_source, features.grid

    def frame_segment(
        self, start: int, tag_ids: list[int], carriers: torch.Tensor, grid: tuple[int, int] | None
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Qwen2.5-VL's segment, each row widened by its DeepStack features (zeros for text rows)."""
        width = self.hidden * (1 + self.deepstack_layers)
        if carriers.shape[-1] != width:
            raise ValueError(
                f"Qwen3-VL carriers are {width} wide (embedding + {self.deepstack_layers} DeepStack "
                f"levels), got {carriers.shape[-1]}: build them with encode_frames + compress"
            )
        main, deep = carriers[:, : self.hidden], carriers[:, self.hidden :]
        embeds, positions, end = super().frame_segment(start, tag_ids, main, grid)
        if not self.deepstack_layers:
            return embeds, positions, end
        wide = embeds.new_zeros(embeds.shape[0], self.hidden * (1 + self.deepstack_layers))
        wide[:, : self.hidden] = embeds
        first = len(tag_ids) + 1  # after the tag and <|vision_start|>
        wide[first : first + deep.shape[0], self.hidden :] = deep.to(embeds.dtype)
        return wide, positions, end

    def _lm_inputs(self, embeds: torch.Tensor) -> dict:
        inputs = {"inputs_embeds": embeds[:, : self.hidden].unsqueeze(0).to(self.dtype)}
        if embeds.shape[-1] > self.hidden:  # frame segments: DeepStack rides along every row
            deep = embeds[:, self.hidden :].to(self.dtype)
            inputs["visual_pos_masks"] = torch.ones(1, embeds.shape[0], dtype=torch.bool, device=self.device)
            inputs["deepstack_visual_embeds"] = list(deep.split(self.hidden, dim=-1))
        return inputs

    def rope_angles(self, positions: torch.Tensor) -> torch.Tensor:
        """Interleaved M-RoPE: pair k turns with h if k % 3 == 1 (within 3 * sections[1]), with w if
        k % 3 == 2 (within 3 * sections[2]), else with t (the recomposition in transformers' rotary)."""
        sections = self._lm.rotary_emb.mrope_section
        pairs = self.rope_inv_freq().shape[0]
        axis = torch.zeros(pairs, dtype=torch.long)
        for dim, offset in ((1, 1), (2, 2)):
            axis[offset : sections[dim] * 3 : 3] = dim
        return positions.double()[axis].T * self.rope_inv_freq().double().view(1, -1)
