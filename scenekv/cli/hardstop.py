"""A bound on how long a stop may take: after SIGTERM the server ends by a deadline, whatever an
actor is doing.

The orderly path (go_away, drain, flush every stream, Ray shutdown, Redis child shutdown) is tried
first; a hung actor or a blocked call can stall any step of it. If the deadline passes, every child
process (Ray's GCS, raylet and workers, a private redis-server) gets SIGTERM, then SIGKILL half a
second later, and the process exits with status 1.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time

import psutil

log = logging.getLogger(__name__)

KILL_GRACE_S = 0.5  # SIGTERM to SIGKILL, and SIGKILL to giving up, per kill_children
# kill_children's worst case (2 x grace) plus listing the children and exiting on a loaded machine
KILL_BUDGET_S = 2 * KILL_GRACE_S + 0.7


class HardStop:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline: float | None = None
        self._done = threading.Event()

    def arm(self) -> None:
        """Start the clock (idempotent): from now the process has ``seconds`` to stop."""
        if self.deadline is not None:
            return
        self.deadline = time.monotonic() + self.seconds
        threading.Thread(target=self._watch, name="scenekv-hardstop", daemon=True).start()

    def left(self, floor: float = 0.1) -> float:
        """Seconds until the deadline (at least ``floor``): a budget for the next shutdown step."""
        if self.deadline is None:
            return self.seconds
        # ends before the watchdog fires (KILL_BUDGET_S before the deadline)
        return max(floor, self.deadline - time.monotonic() - KILL_BUDGET_S - 0.3)

    def disarm(self) -> None:
        self._done.set()

    def now(self) -> None:
        """A second SIGTERM / Ctrl-C: stop every child and exit at once."""
        _exit_hard("stopping now: every child process is stopped")

    def _watch(self) -> None:
        assert self.deadline is not None
        # fire early enough that stopping the children and exiting fit before the deadline too
        if self._done.wait(max(0.0, self.deadline - time.monotonic() - KILL_BUDGET_S)):
            return
        _exit_hard(
            f"the orderly shutdown did not finish in {self.seconds:.1f} s: stopping every child process"
        )


def _exit_hard(why: str) -> None:
    log.error("%s", why)
    kill_children()
    logging.shutdown()
    os._exit(1)


def kill_children(grace_s: float = KILL_GRACE_S) -> None:
    """SIGTERM every descendant of this process, then SIGKILL whatever is still there."""
    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=grace_s)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(alive, timeout=grace_s)
