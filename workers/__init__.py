"""Ray actors for live and bulk work; the only package that imports ray (issue: qa/ + workers/)."""
