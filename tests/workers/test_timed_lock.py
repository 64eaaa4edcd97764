"""The model lock is first come, first served: work that interleaves step by step (answer tokens,
caption steps, frame batches) gets it in the order it asked, and a waiter that gives up does not
leave it stuck."""

from __future__ import annotations

import threading
import time

from scenekv.workers.timed_lock import TimedLock


def test_waiters_get_the_lock_in_the_order_they_asked():
    lock, order = TimedLock(), []
    lock.__enter__()  # held: everyone below queues
    threads = []
    for i in range(6):
        t = threading.Thread(target=lambda i=i: (lock.__enter__(), order.append(i), lock.__exit__()))
        t.start()
        threads.append(t)
        while lock._tickets != i + 2:  # this one has its ticket before the next one asks
            time.sleep(0.001)
    lock.__exit__()
    for t in threads:
        t.join(5)
    assert order == list(range(6))
    assert lock.wait_s > 0 and lock.held_s > 0


def test_the_releasing_thread_does_not_jump_the_queue():
    """A thread that releases and asks again at once (an answer's next token) goes behind the
    thread that was already waiting (a frame batch)."""
    lock, order = TimedLock(), []
    waiting = threading.Event()

    def batch():
        waiting.set()
        with lock:
            order.append("batch")

    with lock:
        t = threading.Thread(target=batch)
        t.start()
        waiting.wait(5)
        while lock._tickets != 2:
            time.sleep(0.001)
    with lock:  # asked again right after letting go
        order.append("token")
    t.join(5)
    assert order == ["batch", "token"]


def test_an_interrupted_waiter_gives_its_turn_away():
    lock = TimedLock()
    lock.__enter__()
    with lock._cv:  # a waiter whose wait was interrupted: its ticket is skipped, not waited for
        lock._abandoned.add(lock._tickets)
        lock._tickets += 1
    got = threading.Event()
    t = threading.Thread(target=lambda: (lock.__enter__(), got.set(), lock.__exit__()))
    t.start()
    lock.__exit__()
    assert got.wait(5)
    t.join(5)
