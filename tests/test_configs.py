"""Every shipped config composes; registry entries are config choices with the code's defaults;
no YAML file, and no override of a paper table (conf/reproduce/), restates a default."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from labformer import CONF_DIR, registry
from labformer.cli import config_choices
from labformer.config_store import GROUPS, entry_config, task_config
from labformer.config_store import compose_config as compose_cell
from labformer.errors import UserError
from labformer.results.record import flatten
from labformer.results.reproduce import TABLES, load_table, override_key

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


# Paper tables (conf/reproduce/): no override restates what its cell's config holds without it.
_PARSER = OverridesParser.create()
_COMPOSED: dict[tuple[str, ...], tuple[dict, dict] | None] = {}  # shared by every table: they repeat presets
_ABSENT = object()


def _compose(table, overrides: tuple[str, ...]) -> tuple[dict, dict] | None:
    """(raw, resolved) config of a cell with exactly these overrides, composed as expected_config (the
    reproduce command) composes it; None when they do not compose (task.difference without task=change)."""
    key = (*overrides, f"{table.repeat_key}={table.repeat_values[0]}")
    if key not in _COMPOSED:
        try:
            cfg = compose_cell(*key)
            _COMPOSED[key] = OmegaConf.to_container(cfg), OmegaConf.to_container(cfg, resolve=True)
        except Exception:
            _COMPOSED[key] = None
    return _COMPOSED[key]


def _setting(override: str) -> tuple[str, object] | None:
    """(key, value) of a plain `a.b=value`; None for a group choice (model=gcn), `+`, `~` or `++`."""
    parsed = _PARSER.parse_overrides([override])[0]
    key = parsed.key_or_group
    if parsed.is_add() or parsed.is_delete() or parsed.is_force_add() or "." not in key or "/" in key:
        return None
    return key, parsed.value()


def _node(tree, key: str):
    for part in key.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return _ABSENT
        tree = tree[part]
    return tree


def _overlap(a: str, b: str) -> bool:
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def _restates(table, overrides: list[str], i: int) -> bool:
    """Whether the cell's resolved config is the same without overrides[i]. Settings change nothing but their
    own key, so the config of the group choices alone (shared by many rows) settles most cases without
    composing the cell twice; the rest are composed with and without the override."""
    settings = [_setting(o) for o in overrides]
    touched = [s[0] for j, s in enumerate(settings) if s and j != i]
    shape = _compose(table, tuple(o for o, s in zip(overrides, settings) if s is None))
    if shape is not None and settings[i]:
        key, value = settings[i]
        node = _node(shape[0], key)
        if not any(_overlap(key, t) for t in touched) and "${" not in repr(node) and node != value:
            return False
    elif shape is not None:  # a group choice: does the config of the choices alone change without it?
        other = _compose(table, tuple(o for j, (o, s) in enumerate(zip(overrides, settings)) if s is None and j != i))
        if other is not None:
            have, then = flatten(shape[0]), flatten(other[0])
            if any(have.get(k, _ABSENT) != then.get(k, _ABSENT) and "${" not in repr((have.get(k), then.get(k)))
                   and not any(_overlap(k, t) for t in touched) for k in {*have, *then}):
                return False
    without = _compose(table, tuple(overrides[:i] + overrides[i + 1:]))
    return without is not None and without[1] == _compose(table, tuple(overrides))[1]


def _grid_keys(table) -> set[str]:
    """The repetition key and, in a table with `select:`, every key its candidate rows do not all set alike."""
    keys = {table.repeat_key}
    if table.selection is not None:
        rows = [r for r in table.rows if r.name in table.selection.rows]
        written: dict[str, list[str]] = {}
        for row in rows:
            for override in row.overrides:
                written.setdefault(override_key(override), []).append(override)
        keys |= {k for k, seen in written.items() if len(seen) < len(rows) or len(set(seen)) > 1}
    return keys


def restatements(table) -> list[str]:
    """`row 'name': key=value` for every override (`(base)`: one of the base) without which the row's cell
    has the same config, less the grid axes and the table's `pinned:` keys."""
    exempt = _grid_keys(table) | set(table.pinned)
    found = []
    for row in table.rows:
        overrides = [*table.base, *row.overrides]
        found += [f"row {row.name!r}: {override}{' (base)' if i < len(table.base) else ''}"
                  for i, override in enumerate(overrides)
                  if override_key(override) not in exempt and _restates(table, overrides, i)]
    return found


@pytest.mark.parametrize("path", sorted(TABLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_no_reproduce_table_restates_a_default(path):
    """Composed with and without each override (Hydra defaults, presets and the code's defaults applied), a
    table's cell must differ; a deliberate restatement lists its key in the table's `pinned:`."""
    table = load_table(path.stem)
    found = restatements(table)
    assert not found, (f"conf/reproduce/{path.name} restates what the config holds without it: {'; '.join(found)}. "
                       "Remove them, or list the keys in the table's `pinned: [...]` with a comment saying why")


def test_a_table_pins_only_keys_it_sets_and_a_pin_exempts_its_key(tmp_path):
    depth = entry_config(registry.get("vit_nano", kind=GROUPS["model"]))["depth"]
    text = ("title: t\nsource: none\nmetrics: [test/acc]\nrepeat: {seed: [0]}\nbase: [model=vit_nano]\n"
            f"rows:\n  a: {{overrides: [model.depth={depth}, task.lr=0.123]}}\n")
    (tmp_path / "t.yaml").write_text(text)
    assert restatements(load_table(str(tmp_path / "t.yaml"))) == ["row 'a': model=vit_nano (base)",
                                                                  f"row 'a': model.depth={depth}"]
    (tmp_path / "t.yaml").write_text(text + "pinned: [model, model.depth]\n")
    assert restatements(load_table(str(tmp_path / "t.yaml"))) == []
    (tmp_path / "t.yaml").write_text(text + "pinned: [model.depth, model.width]\n")
    with pytest.raises(UserError, match="pinned names model.width, which no override"):
        load_table(str(tmp_path / "t.yaml"))
