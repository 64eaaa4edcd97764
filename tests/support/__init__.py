"""Helpers the tests share: tiny models, Redis fixtures, KV chunks, WebSocket and live-source helpers."""
