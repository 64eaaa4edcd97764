"""docker-compose.yml must stay valid: the deployment users copy is checked like code."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
HAPROXY_CFG = ROOT / "deploy" / "haproxy.cfg"


def _compose_config(env: dict[str, str]) -> subprocess.CompletedProcess:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is not installed: apt-get install -y docker-compose (.ci/run does)"
    with tempfile.TemporaryDirectory() as empty:  # no .env: a developer's own must not change the check
        env_file = Path(empty) / ".env"
        env_file.touch()
        return subprocess.run(
            [binary, "--env-file", str(env_file), "-f", str(ROOT / "docker-compose.yml"), "config"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd=ROOT,
        )


def test_docker_compose_file_validates_and_wires_the_services():
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCENEKV_")}
    out = _compose_config({**env, "SCENEKV_TOKEN": "compose-test-token"})
    assert out.returncode == 0, out.stderr
    config = out.stdout
    services = yaml.safe_load(config)["services"]  # PyYAML comes with ray and transformers
    assert set(services) == {"redis", "ray-head", "ray-worker", "encoders", "gateway-a", "gateway-b", "lb"}
    assert "appendonly" in config and "everysec" in config  # Redis persists (AOF) for restarts
    # the Ray nodes run the SceneKV image itself (the stock Ray image cannot import scenekv); the
    # encoders job and the gateways join as nodes without CPUs: ray.init(address=...) needs a local raylet
    assert "rayproject/ray" not in config
    images = {name for name, s in services.items() if s.get("image") == "scenekv:latest"}
    assert images == {"ray-head", "ray-worker", "encoders", "gateway-a", "gateway-b"}
    assert "--address=ray-head:6379" in services["ray-worker"]["command"]
    assert "--block" in services["ray-worker"]["command"]
    joins = {
        n for n, s in services.items() if "ray start --address=ray-head:6379 --num-cpus=0 &&" in _command(s)
    }
    assert joins == {"encoders", "gateway-a", "gateway-b"}

    # one-shot encoders job: starts the shared, detached encoders and exits
    encoders = services["encoders"]
    assert "exec scenekv encoders up --encoders 2" in _command(encoders)
    assert encoders["restart"] == "on-failure"
    assert encoders["depends_on"]["redis"]["condition"] == "service_healthy"
    assert {"ray-head", "ray-worker"} <= set(encoders["depends_on"])
    assert encoders["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert encoders["environment"]["RAY_ADDRESS"] == "ray-head:6379"

    # two gateways, written once: the same token, no published port, started once the pool is up
    gateway = services["gateway-a"]
    assert services["gateway-b"] == gateway
    assert "exec scenekv serve --host 0.0.0.0 --port 8765 --media-root /media" in _command(gateway)
    assert config.count("exec scenekv serve") == 2
    assert gateway["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert gateway["environment"]["RAY_ADDRESS"] == "ray-head:6379"
    assert gateway["environment"]["SCENEKV_TOKEN"] == "compose-test-token"
    assert gateway["environment"]["SCENEKV_ENCODERS"] == "2"
    assert "SCENEKV_ALLOW_HOST" in gateway["environment"]
    assert "ports" not in gateway
    assert gateway["depends_on"]["encoders"]["condition"] == "service_completed_successfully"

    # the load balancer: the only published port, its config mounted read-only
    lb = services["lb"]
    assert lb["image"] == "haproxy:2.9"
    assert str(lb["ports"][0]).startswith("127.0.0.1:8765:8765")  # loopback only
    assert {n for n, s in services.items() if s.get("ports")} == {"lb"}
    assert f"{HAPROXY_CFG}:/usr/local/etc/haproxy/haproxy.cfg:ro" in lb["volumes"]
    assert {"gateway-a", "gateway-b"} <= set(lb["depends_on"])


def _command(service: dict) -> str:
    command = service.get("command") or []
    return " ".join(command) if isinstance(command, list) else command


def test_compose_refuses_to_run_two_gateways_without_a_shared_token():
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCENEKV_")}
    out = _compose_config(env)
    assert out.returncode != 0
    assert "SCENEKV_TOKEN" in out.stderr


def test_haproxy_config_balances_both_gateways_and_keeps_websockets_open():
    assert HAPROXY_CFG.is_file()
    lines = [line.split("#", 1)[0].strip() for line in HAPROXY_CFG.read_text().splitlines()]
    lines = [line for line in lines if line]
    assert "mode http" in lines  # WebSocket upgrade passes through in HTTP mode
    assert any(re.fullmatch(r"timeout tunnel \d+[smh]", line) for line in lines)
    assert "balance leastconn" in lines
    assert "server gateway-a gateway-a:8765 check" in lines
    assert "server gateway-b gateway-b:8765 check" in lines
    assert "option httpchk" in lines
    # the health route of web/http.py, over HTTP/1.1 with a Host the gateways' Host check accepts
    assert "http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host localhost" in lines
    assert any(line.startswith("bind :8765") for line in lines)
