"""Registry entries as Hydra config choices, every default read from the code.

`model=<name>`, `data=<name>`, `objective=<name>` and `logger=<name>` select nodes made here from the
registry: the entry's name and each setting its signature and its variant `args` give a
default, less what the run supplies itself (a backbone's data sizes, a dataset's data
directory, an objective's feature width). Every task family's settings are made the same
way (`task_defaults/<family>`, merged under `task` before `conf/task/<family>.yaml`). So a
composed config shows every setting a run uses and `model.depth=6` needs no `+`, while no
YAML file restates a default: `conf/<group>/` holds only what differs (a task's choice of
model and data, an experiment's recipe, or a named variant that extends an entry with
`defaults: [vit_tiny, _self_]`).
"""
from __future__ import annotations

import types
import typing
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from labformer import CONF_DIR, registry

GROUPS = {"model": registry.BACKBONE, "data": "dataset", "objective": "objective", "logger": "logger"}
TASK_GROUP = "task_defaults"
# What the run fills in itself (backbones: their family's BACKBONE_INPUTS).
_SUPPLIED = {"dataset": {"data_dir"}, "objective": {"feature_dim"}, "logger": {"run_dir", "run_id"}}


def supplied(entry: registry.Entry) -> set[str]:
    """Arguments the run fills in from elsewhere: never settings of the entry's config group."""
    if entry.kind == registry.BACKBONE:
        return {arg for task in entry.tasks for arg in registry.get(task, kind="task").builder.BACKBONE_INPUTS}
    return _SUPPLIED.get(entry.kind, set())


def _is_mapping(annotation: Any) -> bool:
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    options = typing.get_args(annotation) if union else (annotation,)
    return any(typing.get_origin(a) is dict or a is dict for a in options)


def entry_config(entry: registry.Entry) -> dict[str, Any]:
    """The config node of `entry`: its name and its default settings."""
    params = entry.parameters()
    node: dict[str, Any] = {"name": entry.name}
    for key, value in entry.defaults().items():
        if key in supplied(entry):
            continue
        # An absent option mapping shows as an empty one, so `model.attention_kwargs.<key>=` can fill it.
        node[key] = {} if value is None and key in params and _is_mapping(params[key][1]) else value
    return node


def open_mapping_keys(entry: registry.Entry) -> list[str]:
    """Settings of `entry` that are option mappings (e.g. attention_kwargs): they must accept new keys."""
    params = entry.parameters()
    return [key for key, value in entry_config(entry).items()
            if key in params and _is_mapping(params[key][1]) and isinstance(value, dict)]


def _open_mappings(node: dict[str, Any], open_keys: list[str]) -> Any:
    """`node` as a DictConfig whose option mappings accept new keys: Hydra composes in struct mode, where
    `model.attention_kwargs.groups=8` would be refused as an unknown key."""
    from omegaconf import OmegaConf

    config = OmegaConf.create(node)
    for key in open_keys:
        if OmegaConf.is_dict(config[key]):
            OmegaConf.set_struct(config[key], False)
    return config


def task_config(entry: registry.Entry) -> dict[str, Any]:
    return {"name": entry.name, **entry.builder.settings(entry.defaults())}


_stored = False


def store_registry_configs() -> None:
    """Add every registry entry to Hydra's ConfigStore (once per process; call before composing). The nodes
    come from the registry's index (registry_index.py: no family is imported once it is cached); entries
    registered in this process beyond it (a notebook's, a test's) are added from the live registry."""
    global _stored
    if _stored:
        return
    _stored = True
    from labformer import registry_index

    store = ConfigStore.instance()
    groups = {kind: group for group, kind in GROUPS.items()}
    indexed = set()
    for item in registry_index.entries():
        indexed.add((item["kind"], item["name"]))
        if item["kind"] == "task":
            store.store(group=TASK_GROUP, name=item["name"], node=item["node"], provider="labformer")
        elif item["kind"] in groups:
            store.store(group=groups[item["kind"]], name=item["name"],
                        node=_open_mappings(item["node"], item["open"]), provider="labformer")
    for kind, group in groups.items():
        for entry in registry._REGISTRY.get(kind, {}).values():
            if (kind, entry.name) not in indexed:
                store.store(group=group, name=entry.name, node=_open_mappings(entry_config(entry),
                            open_mapping_keys(entry)), provider="labformer")
    for entry in registry._REGISTRY.get("task", {}).values():
        if ("task", entry.name) not in indexed:
            store.store(group=TASK_GROUP, name=entry.name, node=task_config(entry), provider="labformer")


def compose_config(*overrides: str, config: str = "train") -> DictConfig:
    """`conf/<config>.yaml` with `overrides`, composed in-process as train.py / eval.py compose it
    (for tests, benchmarks and notebooks; no run directory, no Hydra logging)."""
    from hydra import compose, initialize_config_dir

    from labformer.utils.run_identity import register_resolvers

    register_resolvers()
    store_registry_configs()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose(config, overrides=list(overrides))
