"""Qwen2.5-VL through transformers' own modeling classes: dynamic resolution and M-RoPE.

Each frame is encoded as one image (the checkpoint's image path: the frame is repeated to fill the
2-frame temporal patch). Qwen's own video path instead merges *pairs* of frames into one temporal
token; we keep one frame per segment so every frame has its own time tag and can be evicted,
retrieved and moved alone. Native carriers are the merger's (h/28) x (w/28) tokens of the frame.

M-RoPE gives text tokens one position on all three axes and a frame's grid (t, row, col) positions
starting where the text left off; the next text starts after max(rows, cols). Shifting all three
axes by d rotates every frequency pair by d * inv_freq, so the 1-D KV move of vlm/kv.py applies as is.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from transformers import PreTrainedTokenizerBase, Qwen2_5_VLForConditionalGeneration

from .backend import VisionFeatures, VLMBackend

# Per-frame pixel budget: ~448x448. The checkpoint's default (up to 1 MP for images) would make a
# live stream cost ~1000 tokens a frame before any compression.
DEFAULT_MAX_PIXELS = 448 * 448
DEFAULT_MIN_PIXELS = 56 * 56


class Qwen25VLBackend(VLMBackend):
    def __init__(
        self,
        model: Qwen2_5_VLForConditionalGeneration,
        tokenizer: PreTrainedTokenizerBase,
        *,
        model_id: str,
        image_mean: tuple[float, float, float],
        image_std: tuple[float, float, float],
        is_random: bool,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        self.model = model.eval()
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.is_random = is_random
        self._lm = model.model.language_model
        self._visual = model.model.visual
        self.merge = model.config.vision_config.spatial_merge_size
        self.processor = Qwen2VLImageProcessorPil(
            size={"shortest_edge": DEFAULT_MIN_PIXELS, "longest_edge": max_pixels},
            image_mean=list(image_mean),
            image_std=list(image_std),
            patch_size=model.config.vision_config.patch_size,
            merge_size=self.merge,
            temporal_patch_size=model.config.vision_config.temporal_patch_size,
        )
        self.vision_start = model.config.vision_start_token_id
        self.vision_end = model.config.vision_end_token_id
        self._last_grid: tuple[int, int] | None = None

    @property
    def native_tokens_per_frame(self) -> int:
        """Depends on the frame size; known after the first frame (a 448x448 frame gives 16x16)."""
        h, w = self._last_grid or (16, 16)
        return h * w

    @property
    def supports_importance(self) -> bool:
        return False

    def pixels(self, images: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Patches [F * patches, C*2*14*14] and grids [F, 3]; every frame at the first frame's size."""
        h, w = images[0].shape[:2]
        same = [
            img if img.shape[:2] == (h, w) else np.asarray(Image.fromarray(img).resize((w, h)))
            for img in images
        ]
        out = self.processor(images=same, return_tensors="pt")
        return out["pixel_values"].to(self.device, self.dtype), out["image_grid_thw"].to(self.device)

    @torch.inference_mode()
    def encode_frames(self, images: list[np.ndarray], *, need_importance: bool = False) -> VisionFeatures:
        if not images:
            raise ValueError("encode_frames needs at least one frame")
        self.frames_encoded += len(images)
        if need_importance:
            raise NotImplementedError("attention importance is not implemented for Qwen2.5-VL")
        pixels, grid_thw = self.pixels(images)
        merged = self._visual(pixels, grid_thw=grid_thw).pooler_output
        _, gh, gw = (int(v) for v in grid_thw[0])
        grid = (gh // self.merge, gw // self.merge)
        self._last_grid = grid
        return VisionFeatures(tokens=merged.view(len(images), grid[0] * grid[1], -1), grid=grid)

    def native_carriers(self, features: VisionFeatures) -> tuple[torch.Tensor, tuple[int, int]]:
        return features.tokens, features.grid

    def text_positions(self, start: int, n: int) -> torch.Tensor:
        return torch.arange(start, start + n).expand(3, n)

    def _position_ids(self, positions: torch.Tensor) -> torch.Tensor:
        return positions.view(3, 1, -1)

    def frame_segment(
        self, start: int, tag_ids: list[int], carriers: torch.Tensor, grid: tuple[int, int] | None
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """tag <|vision_start|> carriers <|vision_end|>, with carriers on their (row, col) grid."""
        head = [*tag_ids, self.vision_start]
        parts = [self.text_positions(start, len(head))]
        at = start + len(head)
        if grid is None:  # an unordered set (topk): consecutive positions like text
            parts.append(self.text_positions(at, carriers.shape[0]))
            at += carriers.shape[0]
        else:
            rows, cols = grid
            r = torch.arange(rows).view(-1, 1).expand(rows, cols).reshape(-1)
            c = torch.arange(cols).view(1, -1).expand(rows, cols).reshape(-1)
            parts.append(torch.stack([torch.zeros_like(r), r, c]) + at)
            at += max(rows, cols)
        parts.append(self.text_positions(at, 1))
        embeds = torch.cat([self.embed_ids(head), carriers.to(self.dtype), self.embed_ids([self.vision_end])])
        return embeds, torch.cat(parts, dim=1), at + 1

    def rope_angles(self, positions: torch.Tensor) -> torch.Tensor:
        """M-RoPE: frequency pair k turns with the position on its section's axis (t, row or col)."""
        sections = self._lm.rotary_emb.mrope_section
        axis = torch.cat([torch.full((n,), i % 3) for i, n in enumerate(sections)])
        return positions.double()[axis].T * self.rope_inv_freq().double().view(1, -1)
