"""`python -m labformer list [--task T] [--kind K] [--pattern P]`: what the registry holds.
`python -m labformer show <name> [--kind K]`: one entry's settings, their defaults and its documentation.
`python -m labformer results <runs> [--by KEYS]`: a mean +- std table of finished runs' records.
`python -m labformer reproduce <table> [overrides]`: run a paper's table (conf/reproduce/) and render it.
`python -m labformer render <markdown files> [--check]`: fill the record-backed tables inside Markdown files.
`python -m labformer analyse <checkpoint> --attention|--atman|--pairs|--project [--batch N] [--out DIR]`: attention
maps, AtMan token relevance, a siamese encoder's pair attribution, the logit lens of a trained run."""
from __future__ import annotations

import argparse
import fnmatch
import importlib
import inspect
from pathlib import Path

from omegaconf import OmegaConf

from labformer import CONF_DIR, registry


def example_inputs(entry: registry.Entry) -> dict:
    """The sizes a family's backbones are counted at (models/<family>/base.py EXAMPLE_INPUTS)."""
    return importlib.import_module(f"labformer.models.{entry.tasks[0]}.base").EXAMPLE_INPUTS


def parameter_count(entry: registry.Entry) -> str:
    """Parameters of a backbone at its defaults and its family's example input sizes."""
    from labformer.config_store import entry_config

    kwargs = {k: v for k, v in entry_config(entry).items() if k != "name" and v is not None}
    try:
        import torch

        with torch.device("meta"):  # no memory, no init time
            model = entry.build(**example_inputs(entry), **kwargs)
        from labformer.layers.moe import active_parameters

        def size(n: int) -> str:
            return f"{n / 1e6:.2f}M" if n >= 100_000 else f"{n / 1e3:.1f}K"

        n, active = sum(p.numel() for p in model.parameters()), active_parameters(model)
        return size(n) if active == n else f"{size(n)} ({size(active)} active)"  # mixtures of experts
    except Exception as e:  # a backbone that cannot be built at these sizes says why
        return f"? ({type(e).__name__})"


def source(entry: registry.Entry) -> str:
    """Where the entry is defined: its builder's file (or the class an adapter builds)."""
    target = entry.signature if entry.signature is not None and entry.kind != registry.BACKBONE else entry.builder
    try:
        return str(Path(inspect.getfile(target)).resolve().relative_to(CONF_DIR.parent))
    except (TypeError, ValueError):
        return getattr(target, "__module__", "?")


def module_file(module: str) -> str:
    """A labformer module's file, relative to the repository, without importing it."""
    base = CONF_DIR.parent / "platform" / Path(*module.split("."))
    path = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
    return str(path.relative_to(CONF_DIR.parent)) if path.is_file() else module


def list_registry(task: str | None, kind: str | None, pattern: str | None) -> str:
    """The registry's index (registry_index.py): no family is imported once it is cached."""
    from labformer import registry_index

    indexed = registry_index.entries()
    counts: dict[str, str] = {}
    lines = []
    for k in [kind] if kind else sorted({e["kind"] for e in indexed}):
        found = sorted((e for e in indexed if e["kind"] == k and (task is None or task in e["tasks"])
                        and (pattern is None or fnmatch.fnmatch(e["name"], pattern))), key=lambda e: e["name"])
        if not found:
            continue
        if k == "backbone" and not counts:
            counts = registry_index.parameter_counts(lambda name: parameter_count(registry.get(name)))
        lines.append(f"\n{k} ({len(found)})")
        header = f"  {'name':22s} {'tasks':28s} {'params (MoE: active)':>22s}  defined in" if k == "backbone" else \
            f"  {'name':22s} {'tasks':28s} defined in"
        lines.append(header)
        for e in found:
            where, tasks = module_file(e["module"]), ",".join(e["tasks"])
            if k == "backbone":
                lines.append(f"  {e['name']:22s} {tasks:28s} {counts[e['name']]:>22s}  {where}")
            else:
                lines.append(f"  {e['name']:22s} {tasks:28s} {where}")
    return "\n".join(lines).lstrip("\n") or "nothing registered matches"


def show(name: str, kind: str | None) -> str:
    """The config node an entry gives (`model=<name>`, `data=<name>`, ...) and its documentation."""
    from labformer.config_store import GROUPS, entry_config, task_config

    kinds = [kind] if kind else [k for k in registry.kinds() if name in registry.list_models(kind=k)]
    if not kinds:
        registry.get(name)  # raises the unknown-name error with close matches
    out = []
    for k in kinds:
        entry = registry.get(name, kind=k)
        group = next((g for g, kk in GROUPS.items() if kk == k), None)
        node = task_config(entry) if k == "task" else entry_config(entry)
        title = f"{group}={name}" if group else f"task={name}" if k == "task" else f"{k} {name}"
        out.append(f"# {title}   ({k}, {source(entry)})\n" + OmegaConf.to_yaml({group or k: node}).rstrip())
        target = entry.builder
        doc = "\n".join(filter(None, (inspect.getdoc(target), inspect.getdoc(getattr(target, "__init__", None))
                                       if isinstance(target, type) else None)))
        if doc:
            out.append("\n".join(f"# {line}" if line else "#" for line in doc.splitlines()))
    return "\n\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labformer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="print the registry: backbones, datasets, tasks, loggers, ...")
    ls.add_argument("--task", help="only entries serving this task, e.g. vision")
    ls.add_argument("--kind", help="only this registry, e.g. backbone or dataset")
    ls.add_argument("--pattern", help="shell pattern on names, e.g. 'vit_*'")
    sh = sub.add_parser("show", help="one entry's settings (what `model=<name>` etc. puts in the config) and docs")
    sh.add_argument("name", help="e.g. gpt, exphormer, etth1, msn, graph")
    sh.add_argument("--kind", help="backbone, dataset, objective, task, ... (default: every kind with that name)")
    res = sub.add_parser("results", help="aggregate finished runs (their result.json) into a mean +- std table")
    res.add_argument("paths", nargs="+", help="run directories, multirun folders, globs or result.json files")
    res.add_argument("--by", default="", help="settings that make the rows, e.g. model.name,data.horizon")
    res.add_argument("--over", default="seed,data.split,data.fold",
                     help="settings that vary between repetitions of one row (default: seed,data.split,data.fold)")
    res.add_argument("--metric", default="", help="test metrics to show, e.g. test/mse,test/mae (default: all)")
    res.add_argument("--format", default="md", choices=("md", "csv", "latex"))
    rep = sub.add_parser("reproduce", help="run the missing cells of a paper's table (conf/reproduce/) and render it")
    rep.add_argument("table", help="a name in conf/reproduce/ (e.g. etth1_itransformer) or a path to a table file")
    rep.add_argument("overrides", nargs="*", help="added to every cell, e.g. hydra/launcher=slurm trainer=gpu")
    rep.add_argument("--out", default="logs/reproduce", help="where the cells' run folders live (default: %(default)s)")
    rep.add_argument("--dry-run", action="store_true", help="say which cells would run; render what is done")
    rep.add_argument("--row", action="append", default=[], dest="rows", metavar="NAME",
                     help="run only this row (its name as in the table file, e.g. --row 'gcn (residual)'); "
                          "repeat for several; every row is still rendered")
    ren = sub.add_parser("render", help="rewrite the <!-- labformer:results|reproduce ... --> blocks of Markdown "
                                        "files from the committed records (results/markdown.py)")
    ren.add_argument("files", nargs="+", help="Markdown files or globs, e.g. 'benchmarks/**/README.md'")
    ren.add_argument("--check", action="store_true",
                     help="write nothing; exit 2 naming every block that differs from what the records give now")
    ana = sub.add_parser("analyse", help="rebuild a run from its checkpoint and record what its model does on "
                                         "the first test items (labformer/analysis/)")
    ana.add_argument("checkpoint", help="a .ckpt written by train.py, e.g. logs/runs/<run_id>/checkpoints/last.ckpt")
    ana.add_argument("--attention", action="store_true",
                     help="attention probabilities per layer and head: attention_maps.png and .npz")
    ana.add_argument("--batch", type=int, default=8, help="items of the test split (else validation) to run "
                                                           "(default: %(default)s; the picture shows the first)")
    ana.add_argument("--out", help="where to write (default: the checkpoint's run directory)")
    ana.add_argument("--atman", action="store_true", help="AtMan: each input token's (patch's) relevance to the "
                     "prediction, by suppressing the attention to it: atman_relevance.png, .npz, .json")
    ana.add_argument("--suppression", type=float, default=0.9, help="AtMan's p: scores to a suppressed token are "
                     "multiplied by 1 - p (default: %(default)s)")
    ana.add_argument("--kappa", type=float, help="AtMan's spreading: also suppress tokens whose cosine similarity "
                     "to the suppressed one is >= kappa, e.g. 0.7 (default: off)")
    ana.add_argument("--pairs", action="store_true", help="contrastive runs: the similarity of the first two "
                     "items split over patch x patch / token x token pairs: pair_attribution.png, .npz, .json")
    ana.add_argument("--steps", type=int, default=64, help="integration steps of --pairs (default: %(default)s)")
    ana.add_argument("--project", action="store_true", help="logit lens: every layer's hidden state read out "
                     "through the final norm and the unembedding (lm) or the head (vision): logit_lens.png, ...")
    args, rest = parser.parse_known_args(argv)
    if args.command == "reproduce" and not [r for r in rest if r.startswith("-")]:
        args.overrides += rest  # overrides given after an option
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if getattr(args, "kind", None):
        from labformer import registry_index

        kinds = sorted({e["kind"] for e in registry_index.entries()})
        if args.kind not in kinds:
            parser.error(f"unknown --kind {args.kind}; valid: {', '.join(kinds)}")
    from labformer.cli import fail
    from labformer.errors import UserError

    try:
        print(run_command(args))
    except UserError as e:
        fail(e)
    return 0


def run_command(args: argparse.Namespace) -> str:
    def split(text: str) -> list[str]:
        return [t for t in text.split(",") if t]

    if args.command == "reproduce":
        from labformer.results.reproduce import reproduce

        return reproduce(args.table, args.overrides, Path(args.out).absolute(), args.dry_run, args.rows)
    if args.command == "analyse":
        from labformer.analysis.command import analyse

        return analyse(args.checkpoint, args.attention, args.batch, args.out, atman=args.atman, pairs=args.pairs,
                       project=args.project, suppression=args.suppression, kappa=args.kappa, steps=args.steps)
    if args.command == "render":
        from labformer.results.markdown import render_markdown

        return render_markdown(args.files, args.check)
    if args.command == "results":
        from labformer.results.aggregate import results_table

        return results_table(args.paths, split(args.by), split(args.metric) or None, args.format,
                             tuple(split(args.over)))
    if args.command == "show":
        return show(args.name, args.kind)
    return list_registry(args.task, args.kind, args.pattern)

if __name__ == "__main__":
    from labformer.cli import exit_now

    exit_now(main())
