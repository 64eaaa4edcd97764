"""The caption queue on its own: a failed caption is retried later, and a stream dropped while its
caption runs is simply gone (no error reaches the scheduler)."""

from __future__ import annotations

import time

from scenekv.workers.caption_jobs import CaptionQueue


def test_a_stream_dropped_while_its_caption_fails_leaves_the_queue_working():
    queue: CaptionQueue

    def run(job):
        queue.drop(job.sid)  # e.g. the stream's memory failed on another thread meanwhile
        raise RuntimeError("the model broke")
        yield  # pragma: no cover

    queue = CaptionQueue(run=run)
    queue.add("s1", 0, 0.0, 4.0)
    assert queue.step() == 0.0  # one try, failed: not re-queued for a stream that is gone
    assert queue.pending() == 0 and queue.step() is None


def test_a_failed_caption_goes_behind_the_other_scenes_and_is_tried_again():
    tries: list[tuple[str, int]] = []

    def run(job):
        tries.append(job.key)
        if job.index == 0 and job.tries == 0:
            raise RuntimeError("once")
        return f"scene {job.index}"
        yield  # pragma: no cover

    queue = CaptionQueue(run=run)
    queue.add("s1", 0, 0.0, 4.0)
    queue.add("s1", 1, 4.0, 8.0)
    while (wait := queue.step()) is not None:
        if wait > 0:  # the retry's back-off
            time.sleep(wait)
    assert tries == [("s1", 0), ("s1", 1), ("s1", 0)]
    assert queue.counts.done == 2 and queue.counts.retried == 1
