"""What train.py/eval.py do around Hydra: catch unknown config choices early and turn
user errors into one readable message and a non-zero exit code."""
from __future__ import annotations

import logging
import sys
from typing import Callable, TypeVar

from labformer import CONF_DIR, registry_index
from labformer.errors import TrainingFailed, UserError, unknown_choice

T = TypeVar("T")


def config_choices(group: str) -> list[str]:
    """Names `group=<name>` accepts: registry entries (model, data, objective) and conf/<group>/*.yaml."""
    from labformer.config_store import GROUPS

    folder = CONF_DIR / group
    files = {p.stem for p in folder.glob("*.yaml")} if folder.is_dir() else set()
    entries = {e["name"] for e in registry_index.entries(GROUPS[group])} if group in GROUPS else set()
    return sorted(files | entries)


def check_overrides(config_name: str, argv: list[str] | None = None) -> None:
    """Reject `group=choice` overrides naming a config file that does not exist.

    Hydra would reject them too, but without the close matches and only after its start-up.
    """
    argv = sys.argv[1:] if argv is None else argv
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        group = key.lstrip("+~").split("@")[0]
        if "." in group or group == "hydra" or not config_choices(group):
            continue
        choices = config_choices(group)
        for choice in value.split(","):  # multirun: model=a,b
            if choice and choice not in ("null", "none") and choice not in choices:
                fail(unknown_choice(group, choice, choices, fix=f"e.g. {group}={choices[0]}" if choices else ""))


def fail(error: BaseException, code: int = 2) -> None:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(code)


def exit_now(code: int = 0) -> None:
    """End the process without the interpreter's teardown of every loaded module.

    With torch and Lightning loaded that teardown costs about a second of CPU (seconds of wall time
    on a busy machine) after the run has finished. Everything a normal exit does for the run still
    happens first: other threads are joined, exit handlers run (logging's flush, W&B, multiprocessing,
    temporary folders), and the standard streams are flushed.
    """
    import atexit
    import os
    import threading

    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: nothing more can be written anyway
            pass
    os._exit(code)


def in_optuna_study() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig

        return "optuna" in str(HydraConfig.get().sweeper.get("_target_", "")).lower()
    except ValueError:
        return False


def run_guarded(fn: Callable[[], T]) -> T:
    """Run `fn`; a user error (exit 2) or a failed training (exit 3: non-finite loss, collapse) exits with one message.

    Inside an Optuna study the error propagates instead: Hydra records it on the job, the
    sweeper marks the trial FAIL (`max_failure_rate` in conf/hparams_search decides how many
    it tolerates), and the study goes on. (Returning NaN would do the same in newer Optuna,
    but optuna 2.10, which hydra-optuna-sweeper pins, reports the trial twice and aborts.)
    """
    try:
        return fn()
    except (UserError, TrainingFailed) as e:
        if in_optuna_study():
            logging.getLogger("labformer").error("trial failed: %s", e)
            raise
        fail(e, e.exit_code)
    raise AssertionError("unreachable")
