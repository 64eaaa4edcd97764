"""Checkpoints shipped with SceneKV (package data): ``scenekv-world-llava-ov``, the world model."""
