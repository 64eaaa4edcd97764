"""docker-compose.yml must stay valid: the deployment users copy is checked like code."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_docker_compose_file_validates_and_wires_the_service():
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is not installed: apt-get install -y docker-compose (.ci/run does)"
    out = subprocess.run(
        [binary, "-f", str(ROOT / "docker-compose.yml"), "config"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    config = out.stdout
    assert "appendonly" in config and "everysec" in config  # Redis persists (AOF) for restarts
    assert "REDIS_URL: redis://redis:6379/0" in config and "RAY_ADDRESS: ray-head:6379" in config
    assert "exec scenekv serve" in config
    # the Ray nodes run the SceneKV image itself (the stock Ray image cannot import scenekv) and the
    # gateway joins as a node without CPUs: ray.init(address=...) needs a local raylet
    assert "rayproject/ray" not in config
    assert config.count("image: scenekv:latest") == 3
    assert "--address=ray-head:6379 --block" in config.replace("\n    - ", " ")
    assert "ray start --address=ray-head:6379 --num-cpus=0" in config
    assert "SCENEKV_ENCODERS: '2'" in config
