"""`python -m labformer analyse <checkpoint> [--attention] [--atman] [--pairs] [--project] [--batch N] [--out DIR]`."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Callable, Sequence

from labformer.analysis import atman as atman_tool
from labformer.analysis import pairs as pairs_tool
from labformer.analysis import project as project_tool
from labformer.analysis.attention import Found, find_attention, nothing_to_record, record_maps
from labformer.analysis.inputs import Job, family, series_token_names
from labformer.analysis.outputs import log_to_wandb, plot_maps, write_arrays
from labformer.analysis.rebuild import first_items, rebuild
from labformer.errors import UserError

TOOLS = ("attention", "atman", "pairs", "project")  # the order they run and report in


def run_directory(checkpoint: Path) -> Path:
    """<run_dir>/checkpoints/x.ckpt -> <run_dir>; a checkpoint kept elsewhere -> its own folder."""
    folder = checkpoint.resolve().parent
    return folder.parent if folder.name == "checkpoints" else folder


def analyse(checkpoint: str | Path, attention: bool = False, batch: int = 8, out: str | Path | None = None, *,
            atman: bool = False, pairs: bool = False, project: bool = False, suppression: float = 0.9,
            kappa: float | None = None, steps: int = 64) -> str:
    """Rebuild the run from `checkpoint`, run its first `batch` test items (validation without a test
    split) through it and write what was asked for; returns the lines to print.

    attention: attention probabilities per layer and head; atman: AtMan token relevance (suppression p,
    spreading threshold kappa); pairs: a siamese encoder's similarity of items 0 and 1 split over input pairs
    (`steps` integration steps); project: the logit lens over the residual stream (and FFN neurons).
    """
    if not (attention or atman or pairs or project):
        raise UserError("nothing to analyse: say what to record, e.g. "
                        f"python -m labformer analyse {checkpoint} --attention (attention maps), --atman (AtMan "
                        "token relevance), --pairs (a siamese encoder's pair attribution) or --project (logit lens)")
    if batch < 1:
        raise UserError(f"--batch {batch}: give the number of items to analyse, at least 1")
    if steps < 1:
        raise UserError(f"--steps {steps}: give the number of integration steps of --pairs, at least 1 (e.g. 64)")
    checkpoint = Path(checkpoint)
    run = rebuild(checkpoint)
    tools = [t for t, wanted in zip(TOOLS, (attention, atman, pairs, project)) if wanted]
    check_tools(run, tools, suppression, kappa)
    lines, files = run_tools(run, tools, Path(out) if out else run_directory(checkpoint), batch,
                             suppression=suppression, kappa=kappa, steps=steps)
    lines += [f"wrote {f}" for f in files]
    logged = log_to_wandb([f for f in files if f.suffix == ".png"], run.config, run_directory(checkpoint))
    if logged:
        lines.append(logged)
    return "\n".join(lines)


def check_tools(run: Any, tools: Sequence[str], suppression: float = 0.9, kappa: float | None = None) -> None:
    """Every chosen tool's checks on a built run (a rebuild.Rebuilt, or a training run's own module), before any
    data is read: a UserError saying why a tool does not apply."""
    if "attention" in tools:
        found = find_attention(run.module)
        if not found.recorded:
            raise nothing_to_record(run.config.model, found, task=family(run))
    if "atman" in tools:
        atman_tool.check(run, suppression, kappa)
    if "pairs" in tools:
        pairs_tool.check(run)
    if "project" in tools:
        project_tool.check(run)


def run_tools(run: Any, tools: Sequence[str], out: Path, batch: int = 8, *, suppression: float = 0.9,
              kappa: float | None = None, steps: int = 64) -> tuple[list[str], list[Path]]:
    """The chosen tools (in TOOLS order) on the first `batch` test items of `run` (validation without a test
    split), their pictures and numbers written into `out`: (lines to print, files written). The command and
    callbacks.analyse (callbacks/analysis.py) both run their tools here."""
    split, inputs = first_items(run.datamodule, max(batch, 2) if "pairs" in tools else batch)
    if "pairs" in tools and len(inputs) < 2:
        raise UserError(f"--pairs needs two items, and the {split} split holds only {len(inputs)}")
    job = Job(run, split, inputs, out)
    job.out.mkdir(parents=True, exist_ok=True)
    reports: dict[str, Callable[[], tuple[list[str], list[Path]]]] = {
        "attention": lambda: _attention(job, find_attention(run.module), batch),
        "atman": lambda: atman_tool.report(job, suppression, kappa),
        "pairs": lambda: pairs_tool.report(job, steps),
        "project": lambda: project_tool.report(job)}
    lines: list[str] = []
    files: list[Path] = []
    for tool in TOOLS:
        if tool in tools:
            more_lines, more_files = reports[tool]()
            lines += more_lines
            files += more_files
    return lines, files


def _attention(job: Job, found: Found, batch: int) -> tuple[list[str], list[Path]]:
    run, cfg = job.run, job.run.config
    maps = record_maps(run.module, job.inputs, found)
    layers = maps.layers
    if not layers:
        raise nothing_to_record(cfg.model, found, task=family(run))
    items, heads, keys = layers[0][1].shape[0], max(p.shape[1] for _, p in layers), layers[0][1].shape[-1]
    per_item = 1
    if maps.tokens:  # a graph batch: one graph's tokens
        what = f"the {job.split} batch's graph 0 (query x key)\n" + textwrap.fill(maps.tokens, 64)
        on = f"graph 0 of the first {job.split} batch"
    else:
        n = len(job.inputs)
        per_item = items // n if items % n == 0 else 1  # channel-independent forecasters: a sequence per channel
        short = f" (the split holds only {n})" if n < batch else ""
        what, on = f"{job.split} item 0 (query x key)", f"the first {n} {job.split} items{short}"
        if per_item > 1:
            one = "channel" if per_item == getattr(run.datamodule, "channels", None) else "sequence"
            what = f"{job.split} item 0, its {one} 0 of {per_item} (query x key)"
            on += f" ({items} sequences: {per_item} per item, one per {one})"
    labels = series_token_names(run, keys, per_item) if family(run) == "timeseries" else None
    png = plot_maps(layers, job.out, job.title(f"attention of {what}"), labels)
    npz = write_arrays(layers, job.out)
    lines = [f"attention of {len(layers)} layers, up to {heads} heads, on {on} of data={cfg.data.name}, "
             f"model={cfg.model.name} from {run.path}"]
    if maps.tokens:
        lines.append(f"  {maps.tokens}")
    lines += found.skipped_lines()
    lines += [f"  layer{i}: {name} {list(probs.shape)}" for i, (name, probs) in enumerate(layers)]
    return lines, [png, npz]
