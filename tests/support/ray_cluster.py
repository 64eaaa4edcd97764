"""A private Ray cluster on this machine for tests: `ray start --head` (and workers) from this venv, in
a temp dir of its own, each node in its own process group (stopping it stops that node only)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

RAY = Path(sys.executable).with_name("ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_node(*args: str, log: Path) -> subprocess.Popen:
    """`ray start ... --block` in its own process group: stopping the group stops that node only
    (`ray stop` would stop every Ray on the machine)."""
    return subprocess.Popen(
        [str(RAY), "start", "--block", "--disable-usage-stats", "--node-ip-address=127.0.0.1", *args],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=clean_env(),
    )


def clean_env() -> dict:
    """This process's environment without the address of a Ray it ran before (ray.init leaves
    RAY_ADDRESS set: nodes and workers that inherit it try to reach that dead cluster). Auth off:
    Ray 2.60's `ray start` turns token auth on when ~/.ray/auth_token exists, and a driver (auth
    off by default) is then refused; a loopback test cluster goes without, as Ray allows."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    tests = str(Path(__file__).resolve().parents[1])  # the scenario, run as a script, imports support/
    path = os.pathsep.join(p for p in (tests, env.get("PYTHONPATH")) if p)
    return {**env, "PYTHONPATH": path, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


def stop_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass


def private_cluster(tmp_path_factory, workers: int = 1):
    """Generator: the address of a head (2 CPUs) with ``workers`` worker nodes (2 CPUs each),
    stopped when it is closed."""
    if not RAY.exists() or shutil.which(str(RAY)) is None:
        pytest.skip(f"`ray start` is unavailable: no {RAY} next to this Python")
    logs = tmp_path_factory.mktemp("ray")
    # a temp dir of its own: the head writes its address file there, not in /tmp/ray, where every
    # later ray.init() of this machine would find it and try to join this (by then stopped) cluster
    temp = tempfile.mkdtemp(prefix="skvray", dir="/tmp")  # short: Ray's socket paths must fit
    port = free_port()
    address = f"127.0.0.1:{port}"
    head = _ray_node(
        "--head",
        f"--port={port}",
        f"--temp-dir={temp}",
        "--num-cpus=2",
        "--include-dashboard=false",
        log=logs / "h",
    )
    nodes = [head]
    try:
        deadline = time.monotonic() + 90
        while subprocess.run([str(RAY), "status", f"--address={address}"], capture_output=True).returncode:
            assert head.poll() is None and time.monotonic() < deadline, (logs / "h").read_text()[-3000:]
            time.sleep(1)
        for i in range(workers):
            nodes.append(_ray_node(f"--address={address}", "--num-cpus=2", log=logs / f"w{i}"))
        deadline = time.monotonic() + 90
        while _alive_nodes(address) < 1 + workers:
            assert all(n.poll() is None for n in nodes) and time.monotonic() < deadline, "a worker node died"
            time.sleep(1)
        yield address
    finally:
        for proc in reversed(nodes):
            stop_group(proc)
        shutil.rmtree(temp, ignore_errors=True)


def _alive_nodes(address: str) -> int:
    out = subprocess.run([str(RAY), "status", f"--address={address}"], capture_output=True, text=True)
    return out.stdout.count("node_") if out.returncode == 0 else 0
