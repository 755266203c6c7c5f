"""The W&B logger that starts W&B and sends to it from its own thread: nothing waits for it until the
run itself is used, and what was logged arrives in order."""
from __future__ import annotations

import threading

from labformer.utils.wandb_background import BackgroundWandbLogger, _PendingRun, wait_for_wandb


class FakeRun:
    def __init__(self) -> None:
        self.logged: list[dict] = []
        self.config = self
        self.id, self.dir = "fake", "/tmp/fake/files"

    def log(self, metrics: dict) -> None:
        self.logged.append(dict(metrics))

    def update(self, params: dict, allow_val_change: bool = False) -> None:
        self.logged.append({"config": dict(params)})


class SlowStart(BackgroundWandbLogger):
    """W&B's start-up replaced by a fake run that becomes ready when the test says so."""

    def __init__(self, go: threading.Event, fail: bool = False) -> None:
        self.go, self.fail = go, fail
        super().__init__(project="p", offline=True, save_dir="/tmp")

    def _start(self) -> None:
        try:
            self.go.wait(10)
            if self.fail:
                raise RuntimeError("W&B could not start")
            self._experiment = FakeRun()
        except BaseException as e:
            self._failure = e
        finally:
            self._ready.set()


def test_logs_before_wandb_is_ready_are_queued_and_arrive_in_order():
    go = threading.Event()
    logger = SlowStart(go)
    logger.log_hyperparams({"lr": 0.1})
    logger.log_metrics({"a": 1.0}, step=0)
    assert isinstance(logger.experiment, _PendingRun)  # Lightning's set-up touch does not wait
    assert not logger._ready.is_set() and logger._calls.qsize() == 1 and logger._row_step == 0  # the row may grow
    go.set()
    logger._ready.wait(5)
    logger.log_metrics({"a": 2.0}, step=1)
    run = logger.experiment
    assert isinstance(run, FakeRun)
    assert run.logged == [{"config": {"lr": 0.1}}, {"a": 1.0, "trainer/global_step": 0},
                          {"a": 2.0, "trainer/global_step": 1}]


def test_the_stand_in_waits_for_the_real_run():
    go = threading.Event()
    logger = SlowStart(go)
    pending = logger.experiment
    threading.Timer(0.2, go.set).start()
    assert pending.id == "fake"  # reading an attribute waited for the start-up


def test_a_failed_start_is_raised_in_the_run_and_not_at_exit():
    go = threading.Event()
    logger = SlowStart(go, fail=True)
    logger.log_metrics({"a": 1.0}, step=0)  # queued: the failure is not known yet
    go.set()
    logger._ready.wait(5)
    try:
        logger.log_metrics({"a": 2.0}, step=1)
        raise AssertionError("the start-up failure was swallowed")
    except RuntimeError as e:
        assert "could not start" in str(e)
    wait_for_wandb()  # nothing left to wait for, nothing raised twice


def test_the_logs_of_one_step_become_one_row_sent_before_the_run_is_used():
    go = threading.Event()
    go.set()
    logger = SlowStart(go)
    logger._ready.wait(5)
    logger.log_metrics({"train/loss": 1.0}, step=9)  # an epoch's end: three calls for one step
    logger.log_metrics({"val/acc": 0.5}, step=9)
    logger.log_metrics({"lr": 0.1}, step=9)
    run = logger._experiment
    logger.wait()
    assert run.logged == []  # the step may still get more
    logger.log_metrics({"train/loss_step": 0.9}, step=10)
    logger.wait()
    assert run.logged == [{"train/loss": 1.0, "val/acc": 0.5, "lr": 0.1, "trainer/global_step": 9}]
    assert logger.experiment is run and run.logged[-1] == {"train/loss_step": 0.9, "trainer/global_step": 10}
    logger.log_metrics({"test/acc": 0.7}, step=10)
    logger._send_row()  # what finalize does first
    logger.wait()
    assert run.logged[-1] == {"test/acc": 0.7, "trainer/global_step": 10} and len(run.logged) == 3


class SlowRun(FakeRun):
    """A W&B run whose every log takes 50 ms, as a slow service would."""

    def log(self, metrics: dict) -> None:
        import time

        time.sleep(0.05)
        super().log(metrics)


def test_sends_happen_off_the_training_thread_in_order_and_a_picture_waits_for_them():
    import time

    go = threading.Event()
    go.set()
    logger = SlowStart(go)
    logger._ready.wait(5)
    logger._experiment = run = SlowRun()
    began = time.perf_counter()
    for step in range(6):
        logger.log_metrics({"loss": float(step)}, step=step)
    assert time.perf_counter() - began < 0.05  # rows queued, none sent on this thread
    assert logger.experiment is run  # what a picture's log does first: everything before it is sent
    assert [row["loss"] for row in run.logged] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]  # the open row too
    assert threading.current_thread() is not logger._thread


def test_a_failed_send_is_raised_at_the_next_logging_call_once():
    class Broken(FakeRun):
        def log(self, metrics: dict) -> None:
            raise ConnectionError("W&B refused the row")

    go = threading.Event()
    go.set()
    logger = SlowStart(go)
    logger._ready.wait(5)
    logger._experiment = Broken()
    logger.log_metrics({"a": 1.0}, step=0)
    logger.log_metrics({"a": 2.0}, step=1)  # queues step 0's row, which fails in the sender
    logger._calls.join()
    try:
        logger.log_metrics({"a": 3.0}, step=2)
        raise AssertionError("the failed send was swallowed")
    except ConnectionError as e:
        assert "refused" in str(e)
    logger.wait()  # raised once, not again
