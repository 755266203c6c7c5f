"""Every shipped config composes; registry entries are config choices with the code's defaults;
no YAML file restates a default."""
from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from labformer import CONF_DIR, registry
from labformer.cli import config_choices
from labformer.config_store import GROUPS, entry_config, task_config

from conftest import compose_config

# Groups whose files are chosen with `group=<file>`; experiment/debug are applied on top.
CHOICE_GROUPS = ["task", "model", "data", "trainer", "logger", "callbacks", "paths", "experiment", "debug",
                 "objective"]
# Sections of a YAML file whose values the registry defaults.
SECTIONS = ("model", "data", "objective", "logger", "task")


def _group_cases():
    for group in CHOICE_GROUPS:
        for choice in config_choices(group):
            yield pytest.param(group, choice, id=f"{group}={choice}")


@pytest.mark.parametrize("group, choice", list(_group_cases()))
def test_every_config_choice_composes(group, choice):
    cfg = compose_config(f"{group}={choice}")
    OmegaConf.resolve(cfg)  # every interpolation resolves
    assert cfg.task.name and cfg.model.name and cfg.data.name


def test_eval_config_composes():
    cfg = compose_config("ckpt_path=x.ckpt", config="eval")
    assert cfg.ckpt_path == "x.ckpt" and cfg.split == "test"


@pytest.mark.parametrize("group", list(GROUPS))
def test_every_registry_entry_is_a_choice_holding_the_code_defaults(group):
    for entry in registry.entries(GROUPS[group]):
        task = "contrastive" if entry.meta.get("modality") or group == "objective" else entry.tasks[0]
        extra = [f"task={task}"] if task in registry.list_models(kind="task") else []
        cfg = compose_config(*extra, f"{group}={entry.name}")
        assert OmegaConf.to_container(cfg[group]) == entry_config(entry), entry.name


def test_a_setting_absent_from_every_yaml_is_overridable_without_plus():
    cfg = compose_config("model=t2t_vit_14", "model.token_dim=32", "data.val_fraction=0.2")
    assert (cfg.model.token_dim, cfg.data.val_fraction) == (32, 0.2)
    cfg = compose_config("task=graph", "model=exphormer", "model.expander_degree=6", "task.pooling=sum")
    assert (cfg.model.expander_degree, cfg.task.pooling) == (6, "sum")


def test_option_mappings_take_new_keys_without_plus_but_settings_stay_checked():
    cfg = compose_config("task=lm", "model=gpt", "model.ffn=moe_topk", "model.ffn_kwargs.num_experts=4",
                         "model.attention_kwargs={num_features: 16}")
    assert cfg.model.ffn_kwargs == {"num_experts": 4} and cfg.model.attention_kwargs == {"num_features": 16}
    with pytest.raises(Exception, match="num_expert"):  # a typo outside an option mapping is still refused
        compose_config("task=lm", "model=gpt", "model.num_experts=4")


def test_a_task_config_holds_the_family_defaults_its_yaml_does_not_restate():
    for entry in registry.entries("task"):
        cfg = compose_config(f"task={entry.name}")
        assert OmegaConf.to_container(cfg.task) == task_config(entry)
    assert compose_config("task=vision").task.lr == 3e-3  # the vision family's own default (its registration)


def _defaults_for(section: str, cfg) -> dict:
    if section == "task":
        return task_config(registry.get(cfg.task.name, kind="task"))
    return entry_config(registry.get(cfg[section].name, kind=GROUPS[section]))


def _yaml_files() -> list[Path]:
    return sorted(p for p in CONF_DIR.rglob("*.yaml") if "hydra" not in p.parts and "local" not in p.parts)


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(CONF_DIR)))
def test_no_yaml_restates_a_default(path):
    """A value equal to the code's default is written once, in the code. An experiment may pin one on
    purpose (the paper's value, kept if the default moves): its line then says `# pinned`."""
    raw = OmegaConf.load(path)
    group = path.parent.name
    if group not in CHOICE_GROUPS or not any(s in raw for s in SECTIONS):
        return
    cfg = compose_config(f"{group}={path.stem}")
    lines = path.read_text().splitlines()
    restated = []
    for section in (s for s in SECTIONS if s in raw):
        defaults = _defaults_for(section, cfg)
        for key, value in OmegaConf.to_container(raw[section]).items():
            if key == "name" or key not in defaults or value != defaults[key]:
                continue
            pinned = any(line.lstrip().startswith(f"{key}:") and "# pinned" in line for line in lines)
            if not pinned:
                restated.append(f"{section}.{key}={value!r}")
    assert not restated, (f"{path.relative_to(CONF_DIR)} restates code defaults: {', '.join(restated)}. "
                          "Remove them, or mark a deliberate pin with `# pinned: <why>`")


def test_task_picks_its_default_model_and_data_but_command_line_wins():
    cfg = compose_config("task=vision", "model=vit_tiny")
    assert (cfg.task.name, cfg.model.name, cfg.data.name) == ("vision", "vit_tiny", "digits")


def test_a_named_variant_yaml_extends_a_registry_entry(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "vit_deep.yaml").write_text("defaults: [vit_tiny, _self_]\ndepth: 24\n")
    cfg = compose_config("model=vit_deep", f"hydra.searchpath=[file://{tmp_path}]")
    assert (cfg.model.name, cfg.model.depth, cfg.model.embed_dim) == ("vit_tiny", 24, 192)
