"""What train.py/eval.py do around Hydra: catch unknown config choices early and turn
user errors into one readable message and a non-zero exit code."""
from __future__ import annotations

import sys
from typing import Callable, TypeVar

from labformer import CONF_DIR
from labformer.errors import UserError, unknown_choice

T = TypeVar("T")


def config_choices(group: str) -> list[str]:
    folder = CONF_DIR / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


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
        if "." in group or not (CONF_DIR / group).is_dir() or group in ("hydra",):
            continue
        choices = config_choices(group)
        for choice in value.split(","):  # multirun: model=a,b
            if choice and choice not in ("null", "none") and choice not in choices:
                fail(unknown_choice(group, choice, choices, fix=f"e.g. {group}={choices[0]}" if choices else ""))


def fail(error: BaseException, code: int = 2) -> None:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(code)


def run_guarded(fn: Callable[[], T]) -> T:
    from labformer.tasks.base import NonFiniteLossError

    try:
        return fn()
    except UserError as e:
        fail(e, e.exit_code)
    except NonFiniteLossError as e:
        fail(e, e.exit_code)
    raise AssertionError("unreachable")
