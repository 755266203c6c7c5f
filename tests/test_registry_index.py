"""The registry's cached index: it holds exactly what importing every family gives, a run imports only
its own family, and `labformer list` reads the index without importing torch."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from labformer import registry, registry_index
from labformer.config_store import entry_config, open_mapping_keys, task_config

REPO = Path(__file__).resolve().parents[1]


def test_the_index_describes_every_entry_as_the_live_registry_does(tmp_path, monkeypatch):
    monkeypatch.setenv("LABFORMER_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(registry_index, "_index", None)
    built = registry_index.index()
    assert list(tmp_path.glob("registry-*.json")), "the index was not cached"
    indexed = {(e["kind"], e["name"]): e for e in built["entries"]}
    for kind in registry.kinds():
        for entry in registry.entries(kind):
            item = indexed.pop((kind, entry.name))
            assert item["tasks"] == list(entry.tasks) and item["module"] == entry.module
            if kind == "task":
                assert item["node"] == json.loads(json.dumps(task_config(entry)))
            elif "node" in item:
                assert item["node"] == json.loads(json.dumps(entry_config(entry)))
                assert item["open"] == open_mapping_keys(entry)
    assert not indexed, f"indexed but not registered: {sorted(indexed)}"


def test_an_edited_source_file_makes_a_new_index(tmp_path, monkeypatch):
    before = registry_index.fingerprint()
    source = tmp_path / "labformer"
    source.mkdir()
    (source / "a.py").write_text("x = 1\n")
    monkeypatch.setattr(registry_index, "PACKAGE", source)
    first = registry_index.fingerprint()
    (source / "a.py").write_text("x = 22\n")
    assert registry_index.fingerprint() != first != before


def test_a_run_imports_only_its_family_and_list_imports_no_torch(tmp_path):
    env = {"LABFORMER_CACHE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    warm = "from labformer import registry_index; registry_index.index()"
    subprocess.run([sys.executable, "-c", warm], env=env, check=True, cwd=REPO, capture_output=True)
    graph_run = ("import sys; from labformer import registry\n"
                 "from labformer.config_store import store_registry_configs\n"
                 "store_registry_configs(); registry.get('graph', kind='task'); registry.get('gcn', task='graph')\n"
                 "registry.get('cora', kind='dataset', task='graph')\n"
                 "print(sorted(m for m in ('timm', 'torch_geometric', 'tokenizers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", graph_run], env=env, check=True, cwd=REPO, capture_output=True,
                         text=True).stdout
    assert out.strip() == "['torch_geometric']"  # no timm (vision), no tokenizers (language)
    listing = ("import sys; import labformer.__main__ as m; print(m.list_registry(None, None, None));"
               "print('torch' in sys.modules)")
    first, second = (subprocess.run([sys.executable, "-c", listing], env=env, check=True, cwd=REPO,
                                    capture_output=True, text=True).stdout for _ in range(2))
    assert first.strip().endswith("True") and "gcn" in first  # parameters counted once (the models are built)
    assert second.strip().endswith("False") and second == first.replace("True\n", "False\n")  # then read
