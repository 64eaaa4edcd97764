"""Architectures that SceneKV can build without downloading anything.

``tiny-random-llava-onevision`` keeps LLaVA-OneVision's real vision geometry (384 px, patch 14:
a 27x27 = 729-token grid, 196 native video tokens per frame) but narrow, shallow towers, so tests
run the real modeling code in milliseconds. ``random-llava-onevision-qwen2-0.5b`` is the full
0.5B architecture (SigLIP-so400m + Qwen2-0.5B) with random weights: the same compute as the real
checkpoint, for benchmarks on machines that cannot reach the hub.
"""

from __future__ import annotations

from transformers import LlavaOnevisionConfig, Qwen2_5_VLConfig

from scenekv.defaults import DEFAULT_CHECKPOINT, TINY_MODEL

TINY_LLAVA_OV = TINY_MODEL
FULL_RANDOM_LLAVA_OV = "random-llava-onevision-qwen2-0.5b"
TINY_QWEN25_VL = "tiny-random-qwen2.5-vl"
__all__ = [
    "DEFAULT_CHECKPOINT",
    "FULL_RANDOM_LLAVA_OV",
    "TINY_LLAVA_OV",
    "TINY_QWEN25_VL",
    "RANDOM_ARCHITECTURES",
]

# Token ids of the locally built tokenizer (vlm/tokenizer.py): fixed by its special-token order.
_PAD, _IM_START, _IM_END, _IMAGE, _VIDEO = 0, 1, 2, 3, 4
_VISION_START, _VISION_END, _IMAGE_PAD, _VIDEO_PAD = 5, 6, 7, 8


def _llava_ov(vision: dict, text: dict, vocab_size: int) -> LlavaOnevisionConfig:
    config = LlavaOnevisionConfig(
        vision_config={
            "model_type": "siglip_vision_model",
            "image_size": 384,
            "patch_size": 14,
            "vision_use_head": False,
            **vision,
        },
        text_config={
            "model_type": "qwen2",
            "vocab_size": vocab_size,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0},
            "max_position_embeddings": 32768,
            "tie_word_embeddings": True,
            "bos_token_id": _IM_START,
            "eos_token_id": _IM_END,
            "pad_token_id": _PAD,
            **text,
        },
        image_token_index=_IMAGE,
        video_token_index=_VIDEO,
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        tie_word_embeddings=True,
    )
    config.bos_token_id, config.eos_token_id, config.pad_token_id = _IM_START, _IM_END, _PAD
    return config


def tiny_llava_onevision_config(vocab_size: int = 512) -> LlavaOnevisionConfig:
    return _llava_ov(
        vision={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2},
        text={
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            # 10x the usual init scale: outputs depend visibly on context, so exactness tests are sharp
            "initializer_range": 0.2,
        },
        vocab_size=vocab_size,
    )


def full_llava_onevision_05b_config() -> LlavaOnevisionConfig:
    """llava-onevision-qwen2-0.5b-ov's published shapes (SigLIP-so400m, Qwen2-0.5B)."""
    return _llava_ov(
        vision={
            "hidden_size": 1152,
            "intermediate_size": 4304,
            "num_hidden_layers": 26,
            "num_attention_heads": 16,
        },
        text={
            "hidden_size": 896,
            "intermediate_size": 4864,
            "num_hidden_layers": 24,
            "num_attention_heads": 14,
            "num_key_value_heads": 2,
        },
        vocab_size=151936,
    )


def tiny_qwen25_vl_config(vocab_size: int = 512) -> Qwen2_5_VLConfig:
    """Qwen2.5-VL's geometry (patch 14, 2x2 merge, window attention, M-RoPE) in a few narrow layers."""
    head_dim = 16
    config = Qwen2_5_VLConfig(
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [1],
        },
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": head_dim,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1_000_000.0,
                "mrope_section": [2, 3, 3],
            },
            "max_position_embeddings": 32768,
            "initializer_range": 0.2,
            "tie_word_embeddings": True,
            "bos_token_id": _IM_START,
            "eos_token_id": _IM_END,
            "pad_token_id": _PAD,
        },
        image_token_id=_IMAGE_PAD,
        video_token_id=_VIDEO_PAD,
        vision_start_token_id=_VISION_START,
        vision_end_token_id=_VISION_END,
        tie_word_embeddings=True,
    )
    config.bos_token_id, config.eos_token_id, config.pad_token_id = _IM_START, _IM_END, _PAD
    return config


RANDOM_ARCHITECTURES = {
    TINY_LLAVA_OV: tiny_llava_onevision_config,
    FULL_RANDOM_LLAVA_OV: full_llava_onevision_05b_config,
    TINY_QWEN25_VL: tiny_qwen25_vl_config,
}
