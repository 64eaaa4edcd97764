"""Timestamped question answering over a stream's memory (issue: qa/ + workers/)."""
