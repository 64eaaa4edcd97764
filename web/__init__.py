"""WebSocket gateway, demo page, health and metrics (issue: web/)."""
