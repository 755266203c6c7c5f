"""Record-backed blocks in Markdown (`python -m labformer render`): filled from the committed records under
benchmarks/reproduce/, checked for staleness, never running a cell; and the benchmark READMEs are current."""
from __future__ import annotations

import json
import statistics
import subprocess
import sys

import pytest

from labformer import CONF_DIR
from labformer.errors import UserError
from labformer.results import reproduce as reproduce_module
from labformer.results.markdown import find_blocks, render_file, render_markdown
from labformer.results.reproduce import TABLES, load_table, render

ROOT = CONF_DIR.parent
RECORDS = ROOT / "benchmarks" / "reproduce"

TINY_TABLE = """title: Tiny digits
source: none (a test)
metrics: [test/acc]
base: [logger=csv]
repeat: {seed: [0, 1]}
rows:
  depth 1: {overrides: [model.depth=1], paper: {test/acc: 0.5}}
  depth 2: {overrides: [model.depth=2]}
"""


def committed(folder: str) -> list[dict]:
    records = [json.loads(p.read_text()) for p in sorted((RECORDS / folder).glob("*/result.json"))]
    assert records, f"no records under {RECORDS / folder}"
    return records


def mean_std(records: list[dict], metric: str) -> str:
    values = [r["test"][metric] for r in records]
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def markdown(tmp_path, body: str):
    path = tmp_path / "README.md"
    path.write_text(f"# Results\n\nProse stays.\n\n{body}\nMore prose.\n")
    return path


def test_a_reproduce_block_is_filled_from_the_committed_records(tmp_path):
    path = markdown(tmp_path, "<!-- labformer:reproduce cora_gcn -->\n<!-- /labformer:reproduce -->\n\n"
                              "<!-- labformer:reproduce mutag -->\nTYPED 0.99\n<!-- /labformer:reproduce -->\n")
    assert "2 rewritten" in render_markdown([str(path)])
    text = path.read_text()
    cora = committed("cora_gcn/GCN")
    assert len(cora) == 10 and {r["git"]["commit"] for r in cora} and all(r["git"]["commit"] for r in cora)
    commit = cora[0]["git"]["commit"][:8]
    assert f"| GCN | 10 | {mean_std(cora, 'test/acc')} | 0.815 | " in text  # numbers computed here, not by render
    assert f"| {commit} |" in text.split("| GCN | 10 |")[1].splitlines()[0]
    gine = committed("mutag/GINE")
    assert f"| GINE | 10 | {mean_std(gine, 'test/acc')} | 0.894 | " in text
    assert "TYPED" not in text and text.startswith("# Results\n\nProse stays.\n") and text.endswith("More prose.\n")
    # The same table `python -m labformer reproduce <table> --dry-run --out benchmarks/reproduce` prints.
    for name in ("cora_gcn", "mutag"):
        assert render(load_table(name), RECORDS) in text


def test_a_results_block_is_the_results_command_table(tmp_path):
    path = markdown(tmp_path, "<!-- labformer:results benchmarks/reproduce/cora_gcn --metric test/acc -->\n"
                              "<!-- /labformer:results -->\n")
    render_markdown([str(path)])
    cora = committed("cora_gcn/GCN")
    assert f"| 10 | {mean_std(cora, 'test/acc')} | {cora[0]['git']['commit'][:8]} |" in path.read_text()


def test_check_passes_after_rendering_and_names_the_block_whose_number_was_edited(tmp_path):
    path = markdown(tmp_path, "<!-- labformer:results benchmarks/reproduce/mutag/GINE --metric test/acc -->\n"
                              "<!-- /labformer:results -->\n\n<!-- labformer:reproduce cora_gcn -->\n"
                              "<!-- /labformer:reproduce -->\n")

    def check() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "labformer", "render", "--check", str(path)],
                              capture_output=True, text=True, timeout=300, cwd=ROOT)

    stale = check()
    assert stale.returncode == 2 and "2 blocks" not in stale.stdout and stale.stderr.count("is not what the") == 2
    done = subprocess.run([sys.executable, "-m", "labformer", "render", str(path)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    fresh = check()
    assert fresh.returncode == 0, fresh.stderr
    assert f"{path}: 2 blocks, up to date" in fresh.stdout

    rendered = path.read_text()
    number = mean_std(committed("cora_gcn/GCN"), "test/acc").split(" ")[0]
    path.write_text(rendered.replace(f"| {number} ±", "| 0.9999 ±"))
    edited = check()
    assert edited.returncode != 0
    line = rendered.splitlines().index("<!-- labformer:reproduce cora_gcn -->") + 1
    assert f"{path}:{line}: block <!-- labformer:reproduce cora_gcn --> is not what the records give now" \
        in edited.stderr
    assert "0.9999" in edited.stderr and "labformer:results" not in edited.stderr  # only the edited block
    assert "0.9999" in path.read_text()  # --check writes nothing


def test_an_unclosed_block_is_an_error_naming_the_file_and_line(tmp_path):
    path = markdown(tmp_path, "<!-- labformer:reproduce cora_gcn -->\n| typed | 0.82 |\n")
    with pytest.raises(UserError, match=r"README.md:5: block <!-- labformer:reproduce cora_gcn --> is not closed"):
        render_file(path)
    path = markdown(tmp_path, "<!-- labformer:reproduce cora_gcn -->\n<!-- labformer:reproduce mutag -->\n"
                              "<!-- /labformer:reproduce -->\n")
    with pytest.raises(UserError, match="is not closed before the next block opens at line 6"):
        render_file(path)
    path = markdown(tmp_path, "<!-- labformer:reproduce cora_gcn -->\n<!-- /labformer:results -->\n")
    with pytest.raises(UserError, match="closes the block <!-- labformer:reproduce cora_gcn -->"):
        render_file(path)


def test_an_unknown_table_a_missing_folder_and_an_unknown_kind_are_clear_errors(tmp_path):
    path = markdown(tmp_path, "<!-- labformer:reproduce cora_gnc -->\n<!-- /labformer:reproduce -->\n")
    with pytest.raises(UserError, match=r"README.md:5: block <!-- labformer:reproduce cora_gnc -->: no "
                                        r"reproduction table cora_gnc .*the shipped ones: .*cora_gcn"):
        render_file(path)
    path = markdown(tmp_path, "<!-- labformer:results benchmarks/reproduce/no_such_table -->\n"
                              "<!-- /labformer:results -->\n")
    with pytest.raises(UserError, match="no_such_table: no such file, folder or glob match"):
        render_file(path)
    path = markdown(tmp_path, "<!-- labformer:reproduce cora_gcn --out no/such/folder -->\n"
                              "<!-- /labformer:reproduce -->\n")
    with pytest.raises(UserError, match="--out no/such/folder: no such folder"):
        render_file(path)
    path = markdown(tmp_path, "<!-- labformer:table cora_gcn -->\n<!-- /labformer:table -->\n")
    with pytest.raises(UserError, match="unknown block labformer:table; the kinds are results, reproduce"):
        render_file(path)
    with pytest.raises(UserError, match="no such Markdown file"):
        render_markdown([str(tmp_path / "absent.md")])


def test_markers_inside_code_fences_are_examples_not_blocks(tmp_path):
    path = markdown(tmp_path, "```\n<!-- labformer:reproduce no_such_table -->\n```\n")
    assert render_file(path) == (0, [])


def test_rendering_never_runs_a_cell_and_a_table_without_records_renders(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("rendering started a process")

    monkeypatch.setattr(reproduce_module, "run_row", refuse)
    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    table = tmp_path / "tiny.yaml"
    table.write_text(TINY_TABLE)
    out = tmp_path / "out"
    out.mkdir()
    path = markdown(tmp_path, f"<!-- labformer:reproduce {table} --out {out} -->\n<!-- /labformer:reproduce -->\n")
    render_markdown([str(path)])
    text = path.read_text()
    assert "| depth 1 | 0 | - | 0.5 | - | - |" in text and "| depth 2 | 0 | - | - | - | - |" in text
    # `reproduce --dry-run` prints the same table and runs nothing either.
    printed = reproduce_module.reproduce(str(table), [], out, dry_run=True)
    assert printed in text


def test_the_benchmark_readmes_are_what_the_records_give_now():
    """CI's guard: a README table whose records changed (or a number typed into a block) fails here.
    Fix: python -m labformer render 'benchmarks/**/README.md'"""
    report = render_markdown([str(ROOT / "benchmarks" / "**" / "README.md")], check=True)
    assert "benchmarks/README.md" in report and "benchmarks/reproduce/README.md" in report


def test_the_reproduce_readme_renders_every_shipped_table():
    readme = RECORDS / "README.md"
    blocks = find_blocks(readme, readme.read_text().splitlines())
    indexed = {b.args.split()[0] for b in blocks if b.kind == "reproduce"}
    shipped = {p.stem for p in TABLES.glob("*.yaml")}
    assert indexed == shipped, (f"benchmarks/reproduce/README.md lacks blocks for {sorted(shipped - indexed)} "
                                f"and has blocks for unknown tables {sorted(indexed - shipped)}")
