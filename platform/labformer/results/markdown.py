"""Record-backed tables inside Markdown: `python -m labformer render <files...> [--check]`.

A block is everything between an opening and a closing HTML comment, each on a line of its own:

    <!-- labformer:results benchmarks/reproduce/mutag/GINE --metric test/acc -->
    (rendered table)
    <!-- /labformer:results -->

    <!-- labformer:reproduce cora_gcn -->
    (rendered table)
    <!-- /labformer:reproduce -->

`results` takes what `python -m labformer results` takes (folders, globs or result.json files, --by,
--over, --metric) and renders its Markdown table. `reproduce` takes a table of conf/reproduce/ (and
--out, default benchmarks/reproduce) and renders the table `python -m labformer reproduce <table>
--dry-run --out benchmarks/reproduce` prints, from the records of the finished cells only: nothing is
run, and a table without finished cells renders its rows with n=0. Relative paths are from the
repository root. Blocks inside fenced code (```) are examples, not blocks.

`render` rewrites every block in place; `render --check` writes nothing and fails (exit 2), naming the
file, the line and the block, when a block is not what the records give now. The numbers in a block
are never typed: edit the records (rerun the cells), then render again.
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from labformer import CONF_DIR
from labformer.errors import UserError

ROOT = CONF_DIR.parent
KINDS = ("results", "reproduce")
OPEN = re.compile(r"^\s*<!--\s*labformer:(?P<kind>[A-Za-z_-]+)(?P<args>.*?)-->\s*$")
CLOSE = re.compile(r"^\s*<!--\s*/labformer:(?P<kind>[A-Za-z_-]+)\s*-->\s*$")
FENCE = re.compile(r"^\s*(?P<fence>`{3,}|~{3,})")


@dataclass
class Block:
    kind: str
    args: str
    start: int  # 0-based index of the opening comment's line
    end: int = -1  # 0-based index of the closing comment's line

    def label(self) -> str:
        return f"<!-- labformer:{self.kind} {self.args} -->".replace("  ", " ")


def find_blocks(path: Path, lines: list[str]) -> list[Block]:
    """The blocks of a Markdown file's lines; an unclosed, unknown or stray marker is an error."""
    blocks: list[Block] = []
    current: Block | None = None
    fence: str | None = None
    for i, line in enumerate(lines):
        found = FENCE.match(line)
        if found:
            mark = found["fence"]
            if fence is None:
                fence = mark
            elif mark[0] == fence[0] and len(mark) >= len(fence):
                fence = None
            continue
        if fence is not None:
            continue
        opening, closing = OPEN.match(line), CLOSE.match(line)
        if opening:
            kind = opening["kind"]
            if current is not None:
                raise UserError(f"{path}:{current.start + 1}: block {current.label()} is not closed before the "
                                f"next block opens at line {i + 1}; end it with a line "
                                f"<!-- /labformer:{current.kind} -->")
            if kind not in KINDS:
                raise UserError(f"{path}:{i + 1}: unknown block labformer:{kind}; the kinds are "
                                f"{', '.join(KINDS)} (<!-- labformer:reproduce <table> --> or "
                                f"<!-- labformer:results <dir|glob> [--by KEYS] -->)")
            current = Block(kind, opening["args"].strip(), i)
        elif closing:
            if current is None:
                raise UserError(f"{path}:{i + 1}: <!-- /labformer:{closing['kind']} --> closes no open block")
            if closing["kind"] != current.kind:
                raise UserError(f"{path}:{i + 1}: <!-- /labformer:{closing['kind']} --> closes the block "
                                f"{current.label()} of line {current.start + 1}; end it with "
                                f"<!-- /labformer:{current.kind} -->")
            current.end = i
            blocks.append(current)
            current = None
    if current is not None:
        raise UserError(f"{path}:{current.start + 1}: block {current.label()} is not closed: add a line "
                        f"<!-- /labformer:{current.kind} --> after it (the rendered table goes in between)")
    return blocks


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # a malformed block is the user's to fix, not an exit
        usage = " ".join(self.format_usage().split()[1:])
        raise UserError(f"{message} (usage: {usage})")


def _parsers() -> dict[str, _Parser]:
    results = _Parser(prog="labformer:results", add_help=False)
    results.add_argument("paths", nargs="+")
    results.add_argument("--by", default="")
    results.add_argument("--over", default="seed,data.split,data.fold")
    results.add_argument("--metric", default="")
    reproduce = _Parser(prog="labformer:reproduce", add_help=False)
    reproduce.add_argument("table")
    reproduce.add_argument("--out", default="benchmarks/reproduce")
    return {"results": results, "reproduce": reproduce}


def _from_root(path: str) -> Path:
    return Path(path) if os.path.isabs(path) else ROOT / path


def block_text(block: Block) -> str:
    """What the records give for a block now (Markdown, no surrounding blank lines). Never runs a cell."""
    from labformer.results.aggregate import results_table
    from labformer.results.reproduce import load_table, render

    def split(text: str) -> list[str]:
        return [t for t in text.split(",") if t]

    try:
        words = shlex.split(block.args)
    except ValueError as e:
        raise UserError(f"cannot read its arguments ({e})") from None
    args = _parsers()[block.kind].parse_args(words)
    if block.kind == "results":
        return results_table([str(_from_root(p)) for p in args.paths], split(args.by),
                             split(args.metric) or None, "md", tuple(split(args.over)))
    table = load_table(args.table if not args.table.endswith(".yaml") else str(_from_root(args.table)))
    out = _from_root(args.out)
    if not out.is_dir():
        raise UserError(f"--out {args.out}: no such folder ({out}); it holds the cells' run folders "
                        "(python -m labformer reproduce <table> --out <folder>)")
    return render(table, out)


def _first_difference(current: list[str], wanted: list[str]) -> str:
    for n, (have, want) in enumerate(zip(current, wanted), start=1):
        if have != want:
            return f"its line {n} reads {have!r}, the records give {want!r}"
    if len(current) != len(wanted):
        return f"it has {len(current)} lines, the records give {len(wanted)}"
    return "it differs in whitespace"


def render_file(path: Path, check: bool = False) -> tuple[int, list[str]]:
    """(number of blocks, one line per stale block); rewrites the stale blocks unless `check`."""
    if not path.is_file():
        raise UserError(f"{path}: no such Markdown file")
    lines = path.read_text().splitlines(keepends=True)
    blocks = find_blocks(path, [line.rstrip("\r\n") for line in lines])
    stale: list[str] = []
    out: list[str] = []
    done = 0
    for block in blocks:
        try:
            wanted = block_text(block).strip()
        except UserError as e:
            raise UserError(f"{path}:{block.start + 1}: block {block.label()}: {e}") from None
        current = "".join(lines[block.start + 1:block.end]).strip()
        if current != wanted:
            why = _first_difference(current.splitlines(), wanted.splitlines())
            stale.append(f"{path}:{block.start + 1}: block {block.label()} is not what the records give now: {why}")
        out += [*lines[done:block.start + 1], "\n", wanted + "\n", "\n"]
        done = block.end
    out += lines[done:]
    if stale and not check:
        tmp = path.with_name(f".{path.name}.render.tmp")
        tmp.write_text("".join(out))
        os.replace(tmp, path)
    return len(blocks), stale


def markdown_files(patterns: list[str]) -> list[Path]:
    """Files and glob patterns (`**` spans folders, so 'benchmarks/**/README.md' works quoted)."""
    found: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern, recursive=True)) or ([pattern] if Path(pattern).exists() else [])
        if not matches:
            raise UserError(f"{pattern}: no such Markdown file or glob match")
        found += [Path(m) for m in matches if Path(m) not in found]
    return found


def render_markdown(patterns: list[str], check: bool = False) -> str:
    """`python -m labformer render`: rewrite (or with `check`, verify) every block of the files."""
    report, stale = [], []
    for path in markdown_files(patterns):
        count, old = render_file(path, check)
        stale += old
        state = "up to date" if not old else f"{len(old)} stale" if check else f"{len(old)} rewritten"
        report.append(f"{path}: {count} block{'s' * (count != 1)}, {state}")
    if check and stale:
        raise UserError("\n".join([*stale, "Render them from the records: python -m labformer render "
                                   + " ".join(shlex.quote(p) for p in patterns)]))
    return "\n".join(report)
