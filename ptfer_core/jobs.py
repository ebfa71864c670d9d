"""Long work in a background thread that a caller (the app, a script) can watch and cancel.

In the app there is one `Job` per browser session (it lives in that session's state), so two tabs run
independently. The work function receives the job itself: it reports progress with `job.report(...)` and passes
`job.should_stop` to `ptfer_core`, which checks it before every optimisation step, so Cancel takes effect within
one step.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import PTferError


@dataclass
class Phase:
    name: str  # e.g. "tune smollm2-135m", "search"
    label: str  # what the user reads
    total: int | None = None
    step: int = 0
    rows: list = field(default_factory=list)  # metric rows (dicts), for the live chart


class Job:
    RUNNING, DONE, CANCELLED, FAILED = "running", "done", "cancelled", "failed"
    _active = 0  # jobs of this process started and not finished (the app's warm-ups wait while any runs, grids too)
    _active_lock = threading.Lock()

    @classmethod
    def active(cls) -> int:
        """How many jobs in this process have been started and have not finished."""
        with cls._active_lock:
            return cls._active

    def __init__(self, work: Callable[[Job], Any], name: str = "job", setup: Callable[[], None] | None = None):
        self.name = name
        self._work = work
        self._setup = setup  # per-thread initialisation, run in the worker thread first
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.state = self.RUNNING
        self.result: Any = None
        self.error: str | None = None  # a user-facing message
        self.detail: str | None = None  # traceback of an unexpected error (shown folded, for bug reports)
        self.phases: list[Phase] = []
        self.log: list[str] = []
        self.started = time.perf_counter()
        self.finished: float | None = None
        self.cancel_requested_at: float | None = None
        self._thread = threading.Thread(target=self._run, name=f"ptfer-{name}", daemon=True)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Job:
        with Job._active_lock:  # counted before the thread runs, so a check right after start() sees it
            Job._active += 1
        try:
            self._thread.start()
        except BaseException:
            with Job._active_lock:
                Job._active -= 1
            raise
        return self

    def _run(self) -> None:
        try:
            if self._setup is not None:
                self._setup()
            result = self._work(self)
            with self._lock:
                self.result = result
                self.state = self.CANCELLED if self._stop.is_set() else self.DONE
        except PTferError as exc:
            with self._lock:
                self.error, self.state = str(exc), self.FAILED
        except Exception as exc:
            with self._lock:
                self.error = f"Unexpected error: {type(exc).__name__}: {exc}"
                self.detail = traceback.format_exc()
                self.state = self.FAILED
        finally:
            self.finished = time.perf_counter()
            with Job._active_lock:
                Job._active -= 1

    def cancel(self) -> None:
        if self.cancel_requested_at is None:
            self.cancel_requested_at = time.perf_counter()
        self._stop.set()

    def should_stop(self) -> bool:
        return self._stop.is_set()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def elapsed(self) -> float:
        return (self.finished or time.perf_counter()) - self.started

    # ------------------------------------------------------------------ progress

    def begin(self, name: str, label: str, total: int | None = None) -> Phase:
        phase = Phase(name, label, total)
        with self._lock:
            self.phases.append(phase)
        self.note(label)
        return phase

    def report(self, step: int, metrics: dict | None = None, total: int | None = None) -> None:
        """Record progress of the current phase; rows with metrics feed the live chart."""
        with self._lock:
            if not self.phases:
                self.phases.append(Phase("work", "Working"))
            phase = self.phases[-1]
            phase.step = step
            if total:
                phase.total = total
            if metrics:
                phase.rows.append({"step": step, **metrics})

    def note(self, message: str) -> None:
        with self._lock:
            self.log.append(message)

    @property
    def phase(self) -> Phase | None:
        return self.phases[-1] if self.phases else None

    def snapshot(self) -> dict:
        """A consistent copy for rendering."""
        with self._lock:
            phase = self.phases[-1] if self.phases else None
            return {
                "state": self.state if not self.running else self.RUNNING,
                "phase": None
                if phase is None
                else {
                    "name": phase.name,
                    "label": phase.label,
                    "step": phase.step,
                    "total": phase.total,
                    "rows": list(phase.rows),
                },
                "phases": [(p.name, p.label, list(p.rows)) for p in self.phases],
                "log": list(self.log),
                "elapsed": self.elapsed,
            }
