"""Stopping a run by a signal: SIGINT / SIGTERM set a flag, the loop checkpoints at the end of the step, then stops."""

from __future__ import annotations

import signal
import threading
from pathlib import Path


class StopSignals:
    """While entered (in the main thread; elsewhere it does nothing), SIGINT and SIGTERM set ``received`` to the
    first signal's number instead of stopping the process; later ones are ignored, so a second signal (a second
    Ctrl-C, or torchrun forwarding SIGTERM after one) cannot cut a checkpoint write short. ``enabled=False``: the
    handlers are left as they are."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.received: int | None = None
        self._old = {}

    def _handle(self, signum, frame):
        if self.received is None:
            self.received = signum

    def __enter__(self):
        if self.enabled and threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old = {}
        return False


class TrainingStopped(KeyboardInterrupt):
    """A run stopped by a signal after step ``step``, its checkpoint saved to ``checkpoint`` (None: the run wrote
    no files). A KeyboardInterrupt, so callers that stop on Ctrl-C still do; ``str()`` is the one line to show."""

    def __init__(self, signal_name: str, step: int, checkpoint: str | Path | None):
        super().__init__(signal_name, step, checkpoint)
        self.signal_name, self.step = signal_name, step
        self.checkpoint = None if checkpoint is None else Path(checkpoint)

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, the shell's convention for a process ended by a signal."""
        return 128 + int(signal.Signals[self.signal_name])

    def __str__(self) -> str:
        where = (f"checkpoint saved to {self.checkpoint}; continue with --resume" if self.checkpoint is not None
                 else "no checkpoint (the run writes no files)")  # fmt: skip
        return f"stopped by {self.signal_name} at step {self.step}; {where}"
