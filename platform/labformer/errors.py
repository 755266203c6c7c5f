"""Errors a user can fix: train.py/eval.py print the message and exit with code 2 (bad input) or 3
(training stopped because it could not succeed: a non-finite loss, collapsed embeddings)."""
from __future__ import annotations

import difflib
from typing import Iterable


class UserError(Exception):
    """Bad input. The message says what is wrong and how to fix it."""

    exit_code = 2


class TrainingFailed(RuntimeError):
    """Training cannot go on usefully; stopped before the next optimiser step, the last good
    checkpoint kept. The message says at which step and which settings to change."""

    exit_code = 3


def close_matches(word: str, options: Iterable[str], n: int = 3) -> list[str]:
    return difflib.get_close_matches(word, list(options), n=n, cutoff=0.5)


def unknown_choice(what: str, given: str, valid: Iterable[str], fix: str = "") -> UserError:
    """`<what> 'given' is unknown. Did you mean ...? Valid: ...` with an optional fix line."""
    valid = sorted(valid)
    near = close_matches(given, valid)
    msg = f"unknown {what} '{given}'."
    if near:
        msg += f" Did you mean: {', '.join(near)}?"
    msg += f"\nValid {what} names: {', '.join(valid) if valid else '(none)'}"
    if fix:
        msg += f"\n{fix}"
    return UserError(msg)
