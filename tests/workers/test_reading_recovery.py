"""Frame readings due when an encoder dies are made after its restart: the world model on Ray actors,
a file fed continuously (readings lag behind it: one model read between vision batches), the encoder
process SIGKILLed with stored frames unread, the stream finished by the restarted encoder."""

from __future__ import annotations

import os
import signal
import time

import pytest
import ray

from scenekv.workers.errors import EncoderUnavailable
from scenekv.workers.results import Progress
from scenekv.world.render import make_world_video

from support.ws_helpers import local_service


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("recovery") / "world.mp4"
    make_world_video(path, seed=626_262, duration=60.0, size=(320, 180), fps=5)
    return str(path)


@pytest.fixture(scope="module")
def service():
    with local_service("recovery", model="scenekv-world") as svc:
        yield svc


def _progress(service, sid) -> Progress:
    try:
        return service.progress(sid)
    except EncoderUnavailable:  # Ray restarts a killed encoder
        return Progress(status="running", frames=0)


def test_readings_due_at_an_encoders_death_are_made_after_its_restart(service, video):
    store = service.store
    sid = service.start_stream(video, fps=1.0, carriers="pool:16").stream_id
    deadline = time.monotonic() + 120
    while True:  # stored frames the index has not read yet: the readings due at the kill
        assert time.monotonic() < deadline, "no stored frames waiting to be read"
        stored, read = store.stored_pts(sid), store.read_through(sid)
        if stored is not None and stored >= 12 and (read is None or read < stored - 4):
            break
        time.sleep(0.05)
    unread = [t for t in range(int(stored) + 1) if read is None or t > read]
    os.kill(ray.get(service.encoder.pid.remote()), signal.SIGKILL)
    deadline = time.monotonic() + 240
    while (progress := _progress(service, sid)).status in ("idle", "running"):
        assert time.monotonic() < deadline, progress
        time.sleep(0.2)
    assert progress.status == "done" and (progress.restarts or 0) >= 1, progress
    service.end_stream(sid)
    readings = store.readings(sid)
    assert [r.pts for r in readings] == [float(t) for t in range(60)]  # every frame read, once
    assert {float(t) for t in unread} <= {r.pts for r in readings}
    assert all(r.object and r.background for r in readings)
