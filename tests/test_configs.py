"""Every shipped config composes, and configs and registry agree name for name."""
from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from labformer import CONF_DIR, registry
from labformer.cli import config_choices

from conftest import compose_config

# Groups whose files are chosen with `group=<file>`; experiment/debug are applied on top.
GROUPS = ["task", "model", "data", "trainer", "logger", "callbacks", "paths", "experiment", "debug", "objective"]


def _group_cases():
    for group in GROUPS:
        for choice in config_choices(group):
            yield pytest.param(group, choice, id=f"{group}={choice}")


@pytest.mark.parametrize("group, choice", list(_group_cases()))
def test_every_config_file_composes(group, choice):
    cfg = compose_config(f"{group}={choice}")
    OmegaConf.resolve(cfg)  # every interpolation resolves
    assert cfg.task.name and cfg.model.name and cfg.data.name


def test_eval_config_composes():
    cfg = compose_config("ckpt_path=x.ckpt", config="eval")
    assert cfg.ckpt_path == "x.ckpt" and cfg.split == "test"


@pytest.mark.parametrize("kind", ["backbone", "dataset", "logger", "task", "objective"])
def test_every_registered_entry_has_its_config_file(kind):
    for entry in registry.entries(kind):
        if kind == "task":
            path = CONF_DIR / "task" / f"{entry.name}.yaml"
        else:
            path = entry.config_file(CONF_DIR)
        assert path.is_file(), f"{kind} '{entry.name}' has no config file {path}"


@pytest.mark.parametrize("group, kind", [("model", "backbone"), ("data", "dataset"), ("logger", "logger"),
                                         ("objective", "objective")])
def test_config_name_is_its_registry_key(group, kind):
    for choice in config_choices(group):
        cfg = OmegaConf.load(CONF_DIR / group / f"{choice}.yaml")
        assert cfg.name == choice, f"conf/{group}/{choice}.yaml says name: {cfg.name}"
        registry.get(cfg.name, kind=kind)


def test_task_picks_its_default_model_and_data_but_command_line_wins():
    cfg = compose_config("task=vision", "model=vit_tiny")
    assert (cfg.task.name, cfg.model.name, cfg.data.name) == ("vision", "vit_tiny", "digits")
