"""One scheduler for every model step of an encoder: ``step()`` = schedule -> execute -> update.

An encoder's model does four kinds of work: vision batches of pushed frames (and each stream's
prefill), decoding (answers, the reads of `when` answers, scene captions and the content index's
frame readings: every token the model generates), planning (an answer's retrieval pass and chunk
loads, opening and ending streams) and background work (choosing what a caption or a reading reads,
storing what it said). All of it runs on this scheduler's one thread, so nothing else locks the
model; callers (the encoder actor's threads) queue requests and wait for their results.

Each step plans (``StepPlan``):
- **calls**: the oldest queued pieces of exclusive model work (``call``: planning, open, end, the
  caches of a `when` answer's next reads), as many as fit in ``call_budget_s`` by the last calls'
  time (at least one), so questions asked together start together and no queue of calls holds
  answers long;
- **frames**: pending append requests in arrival order, at most one per stream (a stream's frames
  stay in order), up to ``max_frames`` (the first request always goes), as one vision batch; while
  answers run, only as many as the last batches say fit in ``busy_vision_s`` (at least one
  request; else in ``max_vision_s``, so a question that comes meanwhile never waits behind a
  batch of many seconds), and only in the vision's turn: the two share the model's
  time, answers ``decode_share`` of it (a vision batch takes seconds on a CPU: one in every step
  would leave answers a token per batch);
- **decode**: one step of **every** running generation in one packed forward over their own caches
  (vlm/batch_decode.py): a decoding answer's next token, a new answer's prompt in chunks sharing
  ``prefill_tokens`` a step, so a long prompt never holds the others for more than a step; the
  reads of a `when` answer (``complete``) are answers here; captions and readings (``adopt``:
  background generations, a few at a time) decode in the same forward, their prompts after the
  answers' (first again after a step that left them none, so answers never starve them);
- **background**: one step of due captions or readings (``background``: choosing and loading what
  they read, handing their generations over, storing what they said).

then executes it and updates each request (``StepOutput``): every caller gets its own result or
error; answers get their text deltas; finished, cancelled and abandoned generations leave the
batch. Failures are isolated in one place (``isolated``): a batch that fails as a whole is run
request by request, so one stream's bad frame or one generation's failure never fails another.
Plain Python: no Ray here (workers/actors.py is the Ray shell).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .scheduler_policy import SchedulerPolicy

Frames = Sequence  # of (pts, RGB uint8 array)
BATCH_STREAM_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
DECODE_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
log = logging.getLogger(__name__)
_END = object()  # the end of an answer's deltas
DEFAULT_POLICY = SchedulerPolicy()


class Histogram:
    """Counts per upper bound (not cumulative), sum and count: what prometheus_client's histogram
    families are built from on the gateway side."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)  # the last one: above every bound
        self.sum, self.count = 0.0, 0

    def observe(self, value: float) -> None:
        i = next((k for k, b in enumerate(self.buckets) if value <= b), len(self.buckets))
        self.counts[i] += 1
        self.sum += value
        self.count += 1

    def as_dict(self) -> dict:
        return {
            "buckets": list(self.buckets),
            "counts": list(self.counts),
            "sum": self.sum,
            "count": self.count,
        }


@dataclass
class _Waiter:
    """A request whose caller waits for one result."""

    submitted: float = field(default_factory=time.perf_counter)
    done: threading.Event = field(default_factory=threading.Event)
    result: object = None

    def resolve(self, result: object) -> None:
        self.result = result
        self.done.set()

    def wait(self) -> Any:
        self.done.wait()
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


@dataclass
class FrameRequest(_Waiter):
    sid: str = ""
    frames: Frames = ()


@dataclass
class CallRequest(_Waiter):
    fn: Callable[[], Any] = lambda: None


@dataclass
class GenRequest:
    """A running generation (vlm/generate.py ``Generation``) and where its deltas go."""

    generation: Any
    out: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    abandoned: bool = False  # its reader left (a client gone mid-answer): dropped at the next step
    submitted: float = field(default_factory=time.perf_counter)
    background: bool = False  # a caption's or a reading's (``adopt``): nobody reads its deltas
    done: bool = False  # it left the batch (finished, failed, dropped): ``error`` says if it failed
    error: BaseException | None = None
    starved: bool = False  # a background prompt that got no prefill tokens last step

    @property
    def dropped(self) -> bool:
        cancel = self.generation.cancel
        return self.abandoned or (cancel is not None and cancel.is_set())


@dataclass(frozen=True)
class StepPlan:
    calls: tuple[CallRequest, ...] = ()
    frames: tuple[FrameRequest, ...] = ()
    decode: tuple[GenRequest, ...] = ()
    budgets: tuple[int | None, ...] = ()  # each generation's prompt tokens this step (None: all)
    background: bool = False

    @property
    def empty(self) -> bool:
        return not (self.calls or self.frames or self.decode or self.background)

    @property
    def frame_count(self) -> int:
        return sum(len(r.frames) for r in self.frames)


@dataclass(frozen=True)
class StepOutput:
    calls: tuple[object, ...] = ()  # each call's result or exception
    frames: tuple[object, ...] = ()  # each frame request's result or exception
    deltas: tuple[object, ...] = ()  # each generation's new text, or the exception that failed it
    background_wait: float | None = None  # as ``background`` returns
    seconds: float = 0.0
    vision_s: float = 0.0  # of which the vision batch
    answer_s: float = 0.0  # and the calls and the decode step


class EncoderScheduler:
    def __init__(
        self,
        execute_frames: Callable[[list[tuple[str, Frames]]], list],
        *,
        step_generations: Callable[[Sequence, Sequence[int | None]], list[str]] | None = None,
        background: Callable[[], float | None] | None = None,
        max_frames: int = 32,
        policy: SchedulerPolicy = DEFAULT_POLICY,
        call_budget_s: float = 0.25,
        max_running: int = 64,
    ) -> None:
        """``execute_frames``: runs a vision batch of (stream id, frames), one result or exception
        each. ``step_generations``: one packed step of generations with their prompt budgets
        (vlm/batch_decode.py). ``background``: one step of other work; returns None when it has
        nothing left, 0.0 when it may have more now, else seconds until it has.
        ``policy``: the time share of answers and vision, the bounds of a vision batch and the
        prompt tokens a step (workers/scheduler_policy.py; serve's flags)."""
        if max_running < 1:
            raise ValueError("max_running must be >= 1")
        self._execute_frames = execute_frames
        self._step_generations = step_generations
        self._background = background
        self.max_frames = max_frames
        self.busy_vision_s = policy.busy_vision_s
        self.max_vision_s = policy.max_vision_s
        self._frame_s: float | None = None  # a frame's vision time, smoothed over the last batches
        self.call_budget_s = call_budget_s
        self._call_s: float | None = None  # a call's time, smoothed likewise
        self.decode_share = policy.decode_share
        self._vision_s = self._decode_s = 0.0  # model time of each while both have work
        self.prefill_tokens = policy.prefill_tokens
        self.max_running = max_running
        self._frames: deque[FrameRequest] = deque()
        self._calls: deque[CallRequest] = deque()
        self._waiting: deque[GenRequest] = deque()  # generations not admitted yet
        self._running: list[GenRequest] = []
        self._behind: list[GenRequest] = []  # background generations (``adopt``), decoding too
        self._cv = threading.Condition()
        self._closed = False
        self._idle: float | None = None  # seconds until background work is due (None: none)
        self.background_errors = 0
        self.steps = 0
        self.busy_s = 0.0  # summed step execution time
        self.batch_streams = Histogram(BATCH_STREAM_BUCKETS)  # distinct streams in each vision batch
        self.batch_frames = Histogram((1, 2, 4, 8, 16, 32, 64, 128))
        self.decode_batch = Histogram(DECODE_BATCH_BUCKETS)  # generations in each decode step
        self.queue_wait_s = 0.0  # summed over frame requests: submit -> batch start
        self.call_wait_s = 0.0  # summed over calls: submit -> run
        self._thread = threading.Thread(target=self._loop, name="encoder-scheduler", daemon=True)
        self._thread.start()

    # -- what callers use ------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Append requests waiting for a vision batch."""
        return len(self._frames)

    @property
    def running(self) -> int:
        """Answers' generations decoding or waiting to start."""
        return len(self._running) + len(self._waiting)

    @property
    def background_running(self) -> int:
        """Captions' and readings' generations decoding (``adopt``)."""
        return len(self._behind)

    def submit(self, sid: str, frames: Frames) -> dict:
        """Encode ``frames`` into stream ``sid`` in the next vision batch that can take them; returns
        that stream's result or raises its error."""
        return self._enqueue(self._frames, FrameRequest(sid=sid, frames=frames)).wait()

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the scheduler's thread between steps (it may use the model) and return its
        result or raise its error. Not from the scheduler's own thread (it would wait for itself)."""
        if threading.current_thread() is self._thread:
            return fn()  # already between steps (work that calls back into the scheduler)
        return self._enqueue(self._calls, CallRequest(fn=fn)).wait()

    def generate(self, generation) -> Iterator[str]:
        """The text deltas of ``generation``, decoded in the same forward passes as every other
        running generation. Closing the iterator early (a client gone) drops it at the next step."""
        request = GenRequest(generation)
        self._enqueue(self._waiting, request)
        return self._follow(request)

    def plan(self, fn: Callable[[], tuple[Any, Any]]) -> tuple[Any, Iterator[str] | None]:
        """``call`` for work that starts a generation (a question's planning): ``fn`` returns
        (result, generation or None) and the generation joins the batch before the next step is
        planned, so no vision batch slips in between the planning and the first token. Returns
        the result and the generation's deltas (as ``generate``), or None without one."""

        def planned():
            result, generation = fn()
            if generation is None:
                return result, None
            # on the scheduler's thread, between steps: in the batch before the next one is planned
            return result, self._enqueue(self._waiting, GenRequest(generation), waits=False)

        result, request = self.call(planned)
        return result, (self._follow(request) if request is not None else None)

    def _follow(self, request: GenRequest) -> Iterator[str]:
        generation = request.generation
        try:
            while True:
                item = request.out.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            if not generation.finished:
                request.abandoned = True
                with self._cv:
                    self._cv.notify()

    def complete(self, generations: Sequence) -> None:
        """Decode ``generations`` to their end as answers, in the same forward passes as every other
        running generation (their prompts admitted together), and wait for all of them; raises the
        first one's error (the others still finish). A `when` answer's reads (qa/when_reads.py)."""
        requests = [GenRequest(g) for g in generations]
        self._enqueue(self._waiting, *requests)
        error = None
        for r in requests:
            item = r.out.get()
            while item is not _END and not isinstance(item, BaseException):
                item = r.out.get()  # a delta: the caller reads the text once it is done
            if isinstance(item, BaseException) and error is None:
                error = item
        if error is not None:
            raise error

    def adopt(self, generation) -> GenRequest:
        """Decode ``generation`` as background work (a caption, a frame's reading) in the packed
        steps, beside the answers; nobody waits: the returned request says when it is ``done`` and
        its ``error``, if any (setting its ``abandoned`` drops it). From any thread, the
        scheduler's own included (a background step hands its generations over)."""
        return self._enqueue(self._behind, GenRequest(generation, background=True), waits=False)

    def close(self, timeout: float = 60.0) -> None:
        """Refuse what is still queued (its callers get an error now, not work on a model that is
        going away) and wait for the step in progress."""
        with self._cv:
            self._closed = True
            frames, calls = list(self._frames), list(self._calls)
            gens = list(self._waiting) + self._running + self._behind
            self._frames, self._calls, self._waiting = deque(), deque(), deque()
            self._running, self._behind = [], []
            self._cv.notify()
        error = RuntimeError("the encoder is shutting down")
        for r in frames + calls:
            r.resolve(error)
        for g in gens:
            g.generation.stop("cancelled")
            g.error, g.done = error, True
            g.out.put(error)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=timeout)

    def _enqueue(self, where: deque | list, *requests, waits: bool = True):
        """Queue ``requests`` together (one step sees all or none); returns the last one (None for
        none). ``waits``: the caller will wait for them, which the scheduler's own thread must never
        do."""
        if waits and threading.current_thread() is self._thread:
            raise RuntimeError("the scheduler's own thread cannot wait for the scheduler")
        with self._cv:
            if self._closed:
                raise RuntimeError("the encoder is shutting down")
            where.extend(requests)
            self._cv.notify()
        return requests[-1] if requests else None

    # -- the loop ----------------------------------------------------------------------------------
    def _loop(self) -> None:
        try:
            while True:
                if not self.step():
                    return
        except BaseException:  # a bug here must not leave every caller waiting forever
            log.exception("the encoder's scheduler stopped")
            self.close(timeout=0)
            raise

    def step(self) -> bool:
        """One step: schedule (waiting for work) -> execute -> update. False once closed. Runs on
        the scheduler's own thread only (its loop)."""
        plan = self.schedule()
        if plan is None:
            return False
        self.update(plan, self.execute(plan))
        return True

    def schedule(self) -> StepPlan | None:
        """The next step's work; waits until there is some or background work is due."""
        with self._cv:
            while not self._closed and not self._has_work():
                if self._idle == 0.0:
                    break
                self._cv.wait(self._idle)
                if self._idle is not None:
                    break  # a retry of background work may be due now
            if self._closed:
                return None
            answering = self._answering()  # before the call is taken: a question's planning counts
            calls = self._take_calls()
            starting = bool(calls) or any(r.generation.prompt_left for r in [*self._waiting, *self._running])
            return StepPlan(
                calls=calls,
                frames=self._take_frames(answering) if self._frames_turn(answering, starting) else (),
                **self._take_decodes(),
                background=self._background is not None and self._idle is not None,
            )

    def _take_calls(self) -> tuple[CallRequest, ...]:
        """The oldest calls, as many as the last ones say fit in ``call_budget_s`` (at least one):
        questions that arrive together are planned together and start decoding in the same step."""
        n = 1 if not self._call_s else max(1, int(self.call_budget_s / self._call_s))
        taken = []
        while self._calls and len(taken) < n:
            taken.append(self._calls.popleft())
        return tuple(taken)

    def _has_work(self) -> bool:
        return bool(self._frames or self._calls or self._waiting or self._running or self._behind)

    def _answering(self) -> bool:
        return bool(self._running or self._waiting or self._calls)

    def _frames_turn(self, answering: bool, starting: bool) -> bool:
        """Whether pending frames go in this step: always while no answer runs, else when vision
        has had less than its share of the model's time since both had work (answers first on a
        tie). While an answer is starting (``starting``: a call that may plan one, a prompt not
        all prefilled) the vision waits for a later step, so a first token never waits for a batch
        of frames, unless vision is owed more than a whole batch: questions that never stop
        coming cannot starve it."""
        if not answering:
            self._vision_s = self._decode_s = 0.0
            return True
        owed = self._decode_s * (1.0 - self.decode_share) - self._vision_s * self.decode_share
        return owed > (self.max_vision_s * self.decode_share if starting else 0.0)

    def _take_frames(self, answering: bool) -> tuple[FrameRequest, ...]:
        """Requests in arrival order, one per stream, up to ``max_frames`` (fewer while
        answers run; the first request always goes)."""
        limit = self.max_frames
        if self._frame_s:  # a question waits for about busy_vision_s, or max_vision_s if it comes now
            budget = self.busy_vision_s if answering else self.max_vision_s
            limit = max(1, min(limit, int(budget / self._frame_s)))
        taken, streams, count, left = [], set(), 0, deque()
        while self._frames:
            r = self._frames.popleft()
            if r.sid in streams or (taken and count + len(r.frames) > limit):
                left.append(r)
                continue
            taken.append(r)
            streams.add(r.sid)
            count += len(r.frames)
        self._frames = left
        return tuple(taken)

    def _take_decodes(self) -> dict:
        """Every running generation's next step; waiting ones admitted while there is room, their
        prompts sharing ``prefill_tokens`` (a prompt longer than what is left runs in chunks):
        answers' first, then background ones (first of all where the last step left them none)."""
        for r in [r for r in self._running + self._behind if r.dropped]:
            self._finish(r)
        for r in [r for r in self._waiting if r.dropped]:  # gone before it started: never run
            self._waiting.remove(r)
            r.generation.stop("cancelled")
            r.done = True
            r.out.put(_END)
        while self._waiting and len(self._running) < self.max_running:
            self._running.append(self._waiting.popleft())
        starved = [r for r in self._behind if r.starved]
        first = starved + self._running + [r for r in self._behind if not r.starved]
        budgets: dict[int, int | None] = {}
        left = self.prefill_tokens
        for r in first:
            prompt = r.generation.prompt_left
            if prompt == 0:
                budgets[id(r)] = None
            elif left > 0:
                budgets[id(r)] = n = min(prompt, left)
                left -= n
            r.starved = r.background and id(r) not in budgets
        decode = tuple(r for r in self._running + self._behind if id(r) in budgets)
        return {"decode": decode, "budgets": tuple(budgets[id(r)] for r in decode)}

    def _finish(self, r: GenRequest) -> None:  # the caller holds _cv
        if not r.generation.finished:
            r.generation.stop("cancelled")
        (self._behind if r.background else self._running).remove(r)
        r.done = True
        r.out.put(_END)

    def execute(self, plan: StepPlan) -> StepOutput:
        t0 = time.perf_counter()
        calls = tuple(self._run_call(r) for r in plan.calls)
        t1 = time.perf_counter()
        frames = tuple(self._run_frames(plan.frames)) if plan.frames else ()
        t2 = time.perf_counter()
        deltas = tuple(self._run_decode(plan)) if plan.decode else ()
        t3 = time.perf_counter()
        wait = self._run_background() if plan.background else None
        t4 = time.perf_counter()
        return StepOutput(calls, frames, deltas, wait, t4 - t0, vision_s=t2 - t1, answer_s=t1 - t0 + t3 - t2)

    def _run_call(self, r: CallRequest) -> object:
        t0 = time.perf_counter()
        self.call_wait_s += t0 - r.submitted
        try:
            return r.fn()
        except BaseException as exc:  # the loop must live on: its caller gets the error
            return exc
        finally:
            took = time.perf_counter() - t0
            self._call_s = _smoothed(self._call_s, took)

    def _run_frames(self, requests: tuple[FrameRequest, ...]) -> list:
        now = time.perf_counter()
        self.queue_wait_s += sum(now - r.submitted for r in requests)
        return isolated(
            [(r.sid, r.frames) for r in requests], lambda batch: _checked(self._execute_frames(batch), batch)
        )

    def _run_decode(self, plan: StepPlan) -> list:
        if self._step_generations is None:
            return [RuntimeError("this scheduler has no model to decode with")] * len(plan.decode)
        items = [(r.generation, b) for r, b in zip(plan.decode, plan.budgets, strict=True)]

        def run(batch):
            return _checked(self._step_generations([g for g, _ in batch], [b for _, b in batch]), batch)

        return isolated(items, run)

    def _run_background(self) -> float | None:
        try:
            return self._background()
        except Exception:  # the loop must live on; the work's own errors are its own to report
            self.background_errors += 1
            log.exception("background step failed")
            return 1.0

    def update(self, plan: StepPlan, out: StepOutput) -> None:
        self.steps += 1
        self.busy_s += out.seconds
        for r, result in zip(plan.calls, out.calls, strict=True):
            r.resolve(result)
        if plan.frames:
            self.batch_streams.observe(len(plan.frames))
            self.batch_frames.observe(plan.frame_count)
            per_frame = out.vision_s / max(1, plan.frame_count)
            self._frame_s = _smoothed(self._frame_s, per_frame)
        for r, result in zip(plan.frames, out.frames, strict=True):
            r.resolve(result)
        if plan.decode:
            self.decode_batch.observe(len(plan.decode))
        with self._cv:
            if self._answering() or plan.decode:
                self._vision_s += out.vision_s
                self._decode_s += out.answer_s
            if plan.background:
                self._idle = out.background_wait
            for r, delta in zip(plan.decode, out.deltas, strict=True):
                if isinstance(delta, BaseException):
                    r.generation.stop("error")
                    r.error = delta
                    r.out.put(delta)
                elif delta and not r.background:
                    r.out.put(delta)
                if r.generation.finished and not r.done:
                    self._finish(r)
                    if r.background and self._background is not None:
                        self._idle = 0.0  # its job goes on (the caption stored) at the next step
            if self._background is not None and (plan.frames or plan.calls) and self._idle is None:
                self._idle = 0.0  # work that may have closed a scene: look for background work


def _smoothed(old: float | None, new: float) -> float:
    """A duration smoothed over the last few (the budgets size steps by it): new one 30 %."""
    return new if old is None else 0.7 * old + 0.3 * new


def _checked(results: list, batch: list) -> list:
    if len(results) != len(batch):
        raise RuntimeError(f"a batch of {len(batch)} requests returned {len(results)} results")
    return results


def isolated(items: list, run: Callable[[list], list]) -> list:
    """``run(items)``'s results; if the batch fails as a whole, each item run alone gets its own
    result or its own error (one bad frame or answer never fails another)."""
    try:
        return run(items)
    except BaseException as exc:  # the loop must live on: its callers wait for it
        if len(items) == 1 or not isinstance(exc, Exception):
            return [exc] * len(items)
    out = []
    for item in items:
        try:
            out.append(run([item])[0])
        except BaseException as exc:
            out.append(exc)
    return out
