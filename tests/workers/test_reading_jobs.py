"""The reading queue's scheduling without a model: one read a step, frames in order, streams in turn,
a caught-up job waits for the next append, a failed frame is retried and then left unread."""

from __future__ import annotations

from scenekv.memory import StreamNotFound
from scenekv.workers import reading_jobs
from scenekv.workers.reading_jobs import ReadingJob, ReadingQueue


class Frames:
    """Streams of frames 1 s apart; ``run`` reads the one after the cursor in two steps."""

    def __init__(self, **streams: int) -> None:
        self.frames = {sid: [float(i) for i in range(n)] for sid, n in streams.items()}
        self.read: list[tuple[str, float]] = []
        self.fail: dict[tuple[str, float], int] = {}  # frame -> failures left
        self.gone: set[str] = set()

    def run(self, job: ReadingJob):
        if job.sid in self.gone:
            raise StreamNotFound("deleted")
        later = [t for t in self.frames[job.sid] if job.after is None or t > job.after]
        if not later:
            return None
        job.current = later[0]
        yield
        if self.fail.get((job.sid, later[0]), 0) > 0:
            self.fail[(job.sid, later[0])] -= 1
            raise RuntimeError("model hiccup")
        self.read.append((job.sid, later[0]))
        return later[0]


def drain(queue: ReadingQueue) -> int:
    steps = 0
    while queue.step() == 0.0:
        steps += 1
    return steps


def test_frames_are_read_in_order_two_steps_each_streams_in_turn_then_the_job_waits():
    frames = Frames(a=3, b=2)
    queue = ReadingQueue(frames.run)
    queue.add("a", lambda: None)
    queue.add("b", lambda: None)
    assert drain(queue) == 2 * 5 + 2  # two steps a frame, one more each to find nothing left
    assert frames.read == [("a", 0.0), ("b", 0.0), ("a", 1.0), ("b", 1.0), ("a", 2.0)]
    assert queue.due() == 0 and queue.step() is None  # caught up: waiting, no busy loop
    frames.frames["a"].append(3.0)
    queue.wake("a")  # the stream appended
    drain(queue)
    assert frames.read[-1] == ("a", 3.0) and queue.counts.frames == 6


def test_a_new_job_starts_after_what_the_index_already_has():
    frames = Frames(a=5)
    queue = ReadingQueue(frames.run)
    queue.add("a", lambda: 2.0)  # read through 2 s (a restarted encoder's index)
    drain(queue)
    assert frames.read == [("a", 3.0), ("a", 4.0)]


def test_a_failed_frame_is_retried_after_a_back_off_then_left_unread(monkeypatch):
    monkeypatch.setattr(reading_jobs, "retry_delay", lambda tries: 0.0)
    frames = Frames(a=3)
    frames.fail[("a", 1.0)] = 2  # two hiccups: read on the third try
    queue = ReadingQueue(frames.run)
    queue.add("a", lambda: None)
    drain(queue)
    assert frames.read == [("a", 0.0), ("a", 1.0), ("a", 2.0)] and queue.counts.retried == 2
    frames.frames["a"] += [3.0, 4.0]
    frames.fail[("a", 3.0)] = 99  # never readable: given up after READING_TRIES, the next goes on
    queue.wake("a")
    drain(queue)
    assert frames.read[-1] == ("a", 4.0) and ("a", 3.0) not in frames.read
    assert queue.counts.given_up == 1


def test_a_retry_waits_for_its_back_off():
    frames = Frames(a=2)
    frames.fail[("a", 0.0)] = 1
    queue = ReadingQueue(frames.run)
    queue.add("a", lambda: None)
    queue.step()
    assert queue.step() == 0.0  # the failed try
    wait = queue.step()
    assert wait is not None and 0 < wait <= 0.25


def test_a_gone_stream_drops_its_job_and_a_closed_one_is_not_kept_once_caught_up():
    frames = Frames(a=2, b=1)
    frames.gone.add("a")
    queue = ReadingQueue(frames.run, fatal=(StreamNotFound,), keep=lambda sid: sid != "b")
    queue.add("a", lambda: None)
    queue.add("b", lambda: None)
    drain(queue)
    assert frames.read == [("b", 0.0)] and queue.jobs == {}


def test_stepping_one_stream_leaves_the_others():
    """What a stream's end drains: its own readings, not every stream's."""
    frames = Frames(a=1, b=1)
    queue = ReadingQueue(frames.run)
    queue.add("a", lambda: None)
    queue.add("b", lambda: None)
    while queue.step("a") == 0.0:
        pass
    assert frames.read == [("a", 0.0)] and queue.due("b") == 1
