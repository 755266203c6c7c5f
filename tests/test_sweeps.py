"""Every W&B sweep spec validates with W&B's own sweep engine, and the first runs it proposes,
turned into the exact argument list `wandb agent` executes, parse and train."""
from __future__ import annotations

import pytest
import sweeps
from hydra.core.override_parser.overrides_parser import OverridesParser

from labformer import CONF_DIR, pipeline, registry
from labformer.sweep_spec import agent_argv, check_spec, load

from conftest import compose_config

SPECS = sorted((CONF_DIR.parent / "sweeps").glob("*.yaml"))


def fixed_choice(spec: dict, group: str) -> str:
    return next(a.split("=", 1)[1] for a in spec["command"] if a.startswith(f"{group}="))


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_spec_is_valid(path):
    spec = load(path)
    monitor = registry.get(fixed_choice(spec, "task"), kind="task").builder.MONITOR[0]
    assert check_spec(spec, monitor) == []


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_first_proposals_parse_and_train(path, tmp_path):
    spec = load(path)
    proposals = sweeps.next_runs(spec, [], n=2)
    assert proposals and all(p is not None for p in proposals)
    for run in proposals:
        argv = agent_argv(spec, {k: v["value"] for k, v in run.config.items()})
        assert argv[1] == "train.py"
        overrides = argv[2:]
        OverridesParser.create().parse_overrides(overrides)  # what Hydra does with sys.argv
        cfg = compose_config(*overrides, "debug=fast_dev_run", log_dir=tmp_path)
        for key, value in run.config.items():
            assert str(_select(cfg, key)) == str(value["value"])
        pipeline.train(cfg)


def _select(cfg, key):
    from omegaconf import OmegaConf

    return OmegaConf.select(cfg, key)


@pytest.mark.parametrize("value, message", [
    (None, "use the string 'null'"),
    ("a,b", "characters Hydra splits"),
    ("two words", "characters Hydra splits"),
    ([1, 2], "sweep over scalar keys"),
])
def test_values_wandb_passes_badly_are_rejected(value, message):
    spec = load(SPECS[0])
    spec["parameters"]["task.lr"] = {"values": [value]}
    assert any(message in p for p in check_spec(spec))


def test_agent_argv_is_what_wandb_agent_runs():
    spec = load(CONF_DIR.parent / "sweeps" / "vision_vit_digits.yaml")
    argv = agent_argv(spec, {"task.lr": 0.001, "model.depth": 2}, python="python")
    assert argv == ["python", "train.py", "task=vision", "model=vit_nano", "data=digits", "task.lr=0.001",
                    "model.depth=2"]
