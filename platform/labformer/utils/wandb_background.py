"""A WandbLogger whose start-up runs beside the run instead of before it.

`wandb.init` costs about 3 s on a CPU machine (its service process, and W&B's own imports when the
run is ready), all of it before the first training step would otherwise run. Here it starts in a
thread as the logger is built; hyperparameters and metrics logged before W&B is ready are queued in
order and sent at the next logging call after it is (or at the latest when the run finishes). Anything
that needs the W&B run itself (`logger.experiment`: pictures, tables) waits for it.

Lightning logs one global step in several calls (an epoch's end: the training means, the validation
metrics, the learning rate), and each W&B `log` costs about a millisecond on the training thread: the
calls for one step are merged into one row, sent when a later step is logged, before the run itself is
used, and when the logger is finalised (Lightning does that at the end of fit, test and on a crash).
"""
from __future__ import annotations

import threading
from typing import Any

from lightning.pytorch.loggers import WandbLogger

_starting: list["BackgroundWandbLogger"] = []  # every logger whose start-up may still run


def wait_for_wandb() -> None:
    """Block until every W&B start-up of this process has finished (before wandb.finish / exit)."""
    for logger in list(_starting):
        logger.wait()


class _PendingRun:
    """Stands for the W&B run while it starts: reading any of its attributes waits for the real one."""

    def __init__(self, logger: "BackgroundWandbLogger") -> None:
        object.__setattr__(self, "_logger", logger)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger.started_run(), name)


class BackgroundWandbLogger(WandbLogger):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ready = threading.Event()
        self._queued: list[tuple[str, tuple[Any, ...]]] = []
        self._lock = threading.Lock()
        self._failure: BaseException | None = None
        self._row: dict[str, Any] = {}  # metrics of global step `_row_step`, not sent yet
        self._row_step: int | None = None
        self._thread = threading.Thread(target=self._start, name="wandb-init", daemon=True)
        _starting.append(self)
        self._thread.start()

    def _start(self) -> None:
        try:
            WandbLogger.experiment.fget(self)  # wandb.init and the metric definitions
        except BaseException as e:  # re-raised in the run's own thread at its next use of W&B
            self._failure = e
        finally:
            self._ready.set()

    def wait(self) -> None:
        if threading.current_thread() is not self._thread:
            self._ready.wait()
        if self in _starting:
            _starting.remove(self)
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure

    def _flush(self) -> None:
        with self._lock:
            queued, self._queued = self._queued, []
        for name, args in queued:
            getattr(WandbLogger, name)(self, *args)

    def _send(self, name: str, *args: Any) -> None:
        if not self._ready.is_set():
            with self._lock:
                if not self._ready.is_set():
                    self._queued.append((name, args))
                    return
        self.wait()
        self._flush()
        getattr(WandbLogger, name)(self, *args)

    @property
    def experiment(self) -> Any:
        # Lightning touches `experiment` while setting up (to start it on every process): a stand-in
        # keeps that from waiting; using the run through it waits.
        if not self._ready.is_set() and threading.current_thread() is not self._thread:
            return _PendingRun(self)
        return self.started_run()

    def started_run(self) -> Any:
        self._send_row()
        self.wait()
        self._flush()
        return WandbLogger.experiment.fget(self)

    def log_hyperparams(self, params: Any) -> None:
        self._send_row()
        self._send("log_hyperparams", params)

    def log_metrics(self, metrics: Any, step: int | None = None) -> None:
        if step is not None and step == self._row_step:
            self._row.update(metrics)
            return
        self._send_row()
        if step is None:
            self._send("log_metrics", metrics, step)
        else:
            self._row, self._row_step = dict(metrics), step

    def _send_row(self) -> None:
        if self._row_step is not None:
            row, step = self._row, self._row_step
            self._row, self._row_step = {}, None  # first: sending reads `experiment`, which sends rows
            self._send("log_metrics", row, step)

    def finalize(self, status: str) -> None:
        self._send_row()
        self.wait()
        self._flush()
        super().finalize(status)

    def __getstate__(self) -> dict[str, Any]:
        self._send_row()
        self.wait()  # a spawned process attaches to the started run (WandbLogger.__getstate__)
        self._flush()
        state = super().__getstate__()
        for key in ("_ready", "_lock", "_thread"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._ready, self._lock, self._thread = threading.Event(), threading.Lock(), None
        self._ready.set()
