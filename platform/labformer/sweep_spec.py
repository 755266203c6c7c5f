"""W&B sweep specs: check them against what Hydra can parse, and build the exact argument
list `wandb agent` runs (`key=str(value)` for each parameter, in place of ${args_no_hyphens}).

W&B writes values with Python's `str`: None becomes `None` (a string to Hydra, not null),
a string with a comma becomes a Hydra sweep (`a,b`), spaces and brackets change the parse.
`check_spec` rejects those before a sweep wastes a cluster allocation.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

REQUIRED_COMMAND = ["${env}", "python", "${program}"]
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_PLAIN = re.compile(r"^[A-Za-z0-9_.+\-/:]+$")


def load(path: str | Path) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text())


def _values(param: dict[str, Any]) -> list[Any]:
    if "value" in param:
        return [param["value"]]
    return list(param.get("values", [])) + [param[k] for k in ("min", "max") if k in param]


def check_spec(spec: dict[str, Any], monitor: str | None = None) -> list[str]:
    """Problems of a sweep spec for this platform (empty when it is usable)."""
    import sweeps

    problems = [str(v) for v in sweeps.schema_violations_from_proposed_config(spec)]
    command = spec.get("command", [])
    if command[:3] != REQUIRED_COMMAND or command[-1] != "${args_no_hyphens}":
        problems.append("command must be [${env}, python, ${program}, <fixed choices>..., ${args_no_hyphens}] "
                        "so that W&B passes Hydra overrides without leading dashes")
    if spec.get("program") != "train.py":
        problems.append("program must be train.py")
    if monitor and spec.get("metric", {}).get("name") != monitor:
        problems.append(f"metric.name must be the task's monitored metric {monitor}")
    for name, param in spec.get("parameters", {}).items():
        if not _DOTTED.match(name):
            problems.append(f"parameter {name!r}: use a flat dotted Hydra key such as task.lr")
        for value in _values(param):
            if value is None:
                problems.append(f"parameter {name}: None is passed as the string 'None'; use the string 'null'")
            elif isinstance(value, (list, dict)):
                problems.append(f"parameter {name}: {value!r} would be passed as {str(value)!r}; "
                                "sweep over scalar keys instead (e.g. model.depths.0)")
            elif isinstance(value, str) and not _PLAIN.match(value) and value != "null":
                problems.append(f"parameter {name}: {value!r} has characters Hydra splits or re-parses "
                                "(comma, space, quote, bracket); choose a plain token")
    return problems


def agent_argv(spec: dict[str, Any], params: dict[str, Any], python: str = sys.executable) -> list[str]:
    """What `wandb agent` executes for a run with these parameter values."""
    args = [f"{k}={v}" for k, v in params.items()]  # W&B formats values with str()
    out: list[str] = []
    for item in spec["command"]:
        if item == "${env}":
            continue  # `/usr/bin/env` on POSIX
        out.extend({"python": [python], "${program}": [spec["program"]], "${args_no_hyphens}": args}.get(item, [item]))
    return out
