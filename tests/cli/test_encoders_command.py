"""`scenekv encoders`: the deployment's pool lives on a Ray cluster, so without one it is a clear error."""

from __future__ import annotations

import os
import subprocess
import sys


def test_encoders_without_a_cluster_says_where_they_live():
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    for action in ("up", "status", "down"):
        out = subprocess.run(
            [sys.executable, "-m", "scenekv.cli", "encoders", action], capture_output=True, text=True, env=env
        )
        assert out.returncode == 2, (action, out.stdout, out.stderr)
        assert "Ray cluster" in out.stderr and "--ray-address" in out.stderr, out.stderr


def test_encoders_rejects_an_unknown_action():
    out = subprocess.run(
        [sys.executable, "-m", "scenekv.cli", "encoders", "restart"], capture_output=True, text=True
    )
    assert out.returncode == 2 and "invalid choice" in out.stderr
