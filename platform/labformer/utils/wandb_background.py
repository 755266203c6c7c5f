"""A WandbLogger that starts and sends beside the run instead of on the training thread.

`wandb.init` costs about 3 s on a CPU machine (its service process, and W&B's own imports when the
run is ready), all of it before the first training step would otherwise run; each W&B `log` then
costs about a millisecond, half of it waiting for W&B's own sender thread. Here one thread per logger
starts W&B as the logger is built and then sends, in order, every call queued by the run: the
training thread only queues. Anything that needs the W&B run itself (`logger.experiment`: pictures,
tables) waits until the queue is sent, so a picture never overtakes an earlier step's row.

Lightning logs one global step in several calls (an epoch's end: the training means, the validation
metrics, the learning rate): the calls for one step are merged into one row, queued when a later step
is logged, before the run itself is used, and when the logger is finalised (Lightning does that at the
end of fit, test and on a crash). A failure of W&B (at start or in a send) is raised in the run at its
next logging call, once.
"""
from __future__ import annotations

import queue
import threading
import weakref
from typing import Any

from lightning.pytorch.loggers import WandbLogger

_loggers: "weakref.WeakSet[BackgroundWandbLogger]" = weakref.WeakSet()  # whose queues exit must drain


def wait_for_wandb() -> None:
    """Block until every W&B logger of this process has started and sent its queue (before wandb.finish)."""
    for logger in list(_loggers):
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
        self._calls: queue.Queue = queue.Queue()  # (WandbLogger method name, args), sent in order
        self._failure: BaseException | None = None
        self._row: dict[str, Any] = {}  # metrics of global step `_row_step`, not queued yet
        self._row_step: int | None = None
        self._thread: threading.Thread | None = threading.Thread(target=self._serve, name="wandb", daemon=True)
        _loggers.add(self)
        self._thread.start()

    def _start(self) -> None:
        try:
            WandbLogger.experiment.fget(self)  # wandb.init and the metric definitions
        except BaseException as e:  # re-raised in the run's own thread at its next use of W&B
            self._failure = e
        finally:
            self._ready.set()

    def _serve(self) -> None:
        self._start()
        while True:
            name, args = self._calls.get()
            try:
                if self._failure is None:
                    getattr(WandbLogger, name)(self, *args)
            except BaseException as e:
                self._failure = e
            finally:
                self._calls.task_done()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure

    def wait(self) -> None:
        """Block until W&B has started and every queued call is sent; raise a failure of either."""
        if threading.current_thread() is not self._thread:
            self._ready.wait()
            self._calls.join()
        self._raise_failure()

    def _send(self, name: str, *args: Any) -> None:
        self._raise_failure()
        if self._thread is None:  # a copy in another process (see __setstate__): no sender thread
            getattr(WandbLogger, name)(self, *args)
        else:
            self._calls.put((name, args))

    @property
    def experiment(self) -> Any:
        if threading.current_thread() is self._thread:  # the sender itself
            return WandbLogger.experiment.fget(self)
        # Lightning touches `experiment` while setting up (to start it on every process): a stand-in
        # keeps that from waiting; using the run through it waits.
        if not self._ready.is_set():
            return _PendingRun(self)
        return self.started_run()

    def started_run(self) -> Any:
        self._send_row()
        self.wait()
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
            self._row, self._row_step = {}, None
            self._send("log_metrics", row, step)

    def finalize(self, status: str) -> None:
        self._send_row()
        self.wait()
        super().finalize(status)

    def __getstate__(self) -> dict[str, Any]:
        self._send_row()
        self.wait()  # a spawned process attaches to the started run (WandbLogger.__getstate__)
        state = super().__getstate__()
        for key in ("_ready", "_calls", "_thread"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._ready, self._calls, self._thread = threading.Event(), queue.Queue(), None
        self._ready.set()
