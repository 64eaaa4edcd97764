"""SceneKV: streaming video understanding over a KV-cache memory of carrier tokens."""

__version__ = "0.1.0"
