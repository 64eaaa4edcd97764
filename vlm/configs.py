"""Architectures that SceneKV can build without downloading anything.

``tiny-random-llava-onevision`` keeps LLaVA-OneVision's real vision geometry (384 px, patch 14:
a 27x27 = 729-token grid, 196 native video tokens per frame) but narrow, shallow towers, so tests
run the real modeling code in milliseconds. ``random-llava-onevision-qwen2-0.5b`` is the full
0.5B architecture (SigLIP-so400m + Qwen2-0.5B) with random weights: the same compute as the real
checkpoint, for benchmarks on machines that cannot reach the hub. The other families follow the same
pattern: ``tiny-random-*`` for tests (each family's real vision geometry, narrow towers) and
``random-*`` at a published checkpoint's shapes for timing.
"""

from __future__ import annotations

from transformers import LlavaOnevisionConfig, Qwen2_5_VLConfig, Qwen3VLConfig, SmolVLMConfig

from scenekv.defaults import DEFAULT_CHECKPOINT, TINY_MODEL

TINY_LLAVA_OV = TINY_MODEL
FULL_RANDOM_LLAVA_OV = "random-llava-onevision-qwen2-0.5b"
TINY_QWEN25_VL = "tiny-random-qwen2.5-vl"
TINY_QWEN3_VL = "tiny-random-qwen3-vl"
FULL_RANDOM_QWEN3_VL = "random-qwen3-vl-2b"
TINY_SMOLVLM2 = "tiny-random-smolvlm2"
FULL_RANDOM_SMOLVLM2 = "random-smolvlm2-256m"
__all__ = [
    "DEFAULT_CHECKPOINT",
    "FULL_RANDOM_LLAVA_OV",
    "FULL_RANDOM_QWEN3_VL",
    "FULL_RANDOM_SMOLVLM2",
    "TINY_LLAVA_OV",
    "TINY_QWEN25_VL",
    "TINY_QWEN3_VL",
    "TINY_SMOLVLM2",
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


def _qwen3_vl(vision: dict, text: dict, vocab_size: int, special: tuple[int, int, int, int]) -> Qwen3VLConfig:
    image, video, start, end = special
    config = Qwen3VLConfig(
        vision_config={
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "num_position_embeddings": 2304,
            **vision,
        },
        text_config={
            "vocab_size": vocab_size,
            "head_dim": 128,
            "max_position_embeddings": 262144,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 5_000_000.0,
                "mrope_section": [24, 20, 20],
                "mrope_interleaved": True,
            },
            "tie_word_embeddings": True,
            **text,
        },
        image_token_id=image,
        video_token_id=video,
        vision_start_token_id=start,
        vision_end_token_id=end,
        tie_word_embeddings=True,
    )
    return config


def tiny_qwen3_vl_config(vocab_size: int = 512) -> Qwen3VLConfig:
    """Qwen3-VL's geometry (patch 16, 2x2 merge, interleaved M-RoPE, DeepStack) in a few narrow layers.

    Three decoder layers and DeepStack from two vision layers: features are injected after decoder
    layers 0 and 1 and not after 2, as in the real model (3 of 28 layers).
    """
    config = _qwen3_vl(
        vision={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": [0, 1],
        },
        text={
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 3,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 5_000_000.0,
                "mrope_section": [2, 3, 3],
                "mrope_interleaved": True,
            },
            "max_position_embeddings": 32768,
            "initializer_range": 0.2,
            "bos_token_id": _IM_START,
            "eos_token_id": _IM_END,
            "pad_token_id": _PAD,
        },
        vocab_size=vocab_size,
        special=(_IMAGE_PAD, _VIDEO_PAD, _VISION_START, _VISION_END),
    )
    config.bos_token_id, config.eos_token_id, config.pad_token_id = _IM_START, _IM_END, _PAD
    return config


def full_qwen3_vl_2b_config() -> Qwen3VLConfig:
    """Qwen3-VL-2B-Instruct's published shapes (a 24-layer 1024-wide ViT, Qwen3-1.7B)."""
    return _qwen3_vl(
        vision={
            "depth": 24,
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_heads": 16,
            "out_hidden_size": 2048,
            "deepstack_visual_indexes": [5, 11, 17],
        },
        text={
            "hidden_size": 2048,
            "intermediate_size": 6144,
            "num_hidden_layers": 28,
            "num_attention_heads": 16,
            "num_key_value_heads": 8,
        },
        vocab_size=151936,
        special=(151655, 151656, 151652, 151653),
    )


def _smolvlm(vision: dict, text: dict, vocab_size: int, image_token_id: int) -> SmolVLMConfig:
    """SmolVLM2: SigLIP at 512 px, patch 16 (32x32 patches), pixel shuffle by 4 -> 8x8 = 64 tokens."""
    return SmolVLMConfig(
        vision_config={"model_type": "smolvlm_vision", "image_size": 512, "patch_size": 16, **vision},
        text_config={
            "model_type": "llama",
            "vocab_size": vocab_size,
            "rope_parameters": {"rope_type": "default", "rope_theta": 100_000.0},
            "max_position_embeddings": 8192,
            "tie_word_embeddings": True,
            "rms_norm_eps": 1e-5,
            **text,
        },
        scale_factor=4,
        image_token_id=image_token_id,
        tie_word_embeddings=True,
    )


def tiny_smolvlm2_config(vocab_size: int = 515) -> SmolVLMConfig:
    """SmolVLM2's vision geometry (512 px, 64 tokens a frame) with narrow towers; the tiny tokenizer
    plus SmolVLM2's three markers (vlm/tokenizer.py SMOLVLM_TOKENS)."""
    config = _smolvlm(
        vision={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2},
        text={
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "initializer_range": 0.2,
            "bos_token_id": _IM_START,
            "eos_token_id": _IM_END,
            "pad_token_id": _PAD,
        },
        vocab_size=vocab_size,
        image_token_id=_IMAGE,
    )
    return config  # bos/eos/pad live on text_config (SmolVLMConfig deprecates the top-level ones)


def full_smolvlm2_256m_config() -> SmolVLMConfig:
    """SmolVLM2-256M-Video-Instruct's published shapes (SigLIP-B/16 at 512 px, 93M; SmolLM2-135M)."""
    return _smolvlm(
        vision={
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
        },
        text={
            "hidden_size": 576,
            "intermediate_size": 1536,
            "num_hidden_layers": 30,
            "num_attention_heads": 9,
            "num_key_value_heads": 3,
        },
        vocab_size=49280,
        image_token_id=49190,
    )


RANDOM_ARCHITECTURES = {
    TINY_LLAVA_OV: tiny_llava_onevision_config,
    FULL_RANDOM_LLAVA_OV: full_llava_onevision_05b_config,
    TINY_QWEN25_VL: tiny_qwen25_vl_config,
    TINY_QWEN3_VL: tiny_qwen3_vl_config,
    FULL_RANDOM_QWEN3_VL: full_qwen3_vl_2b_config,
    TINY_SMOLVLM2: tiny_smolvlm2_config,
    FULL_RANDOM_SMOLVLM2: full_smolvlm2_256m_config,
}
