"""`python -m labformer analyse <checkpoint> --attention [--batch N] [--out DIR]`."""
from __future__ import annotations

from pathlib import Path

from labformer.analysis.attention import find_attention, nothing_to_record, record_attention
from labformer.analysis.outputs import log_to_wandb, plot_maps, write_arrays
from labformer.analysis.rebuild import first_items, rebuild
from labformer.errors import UserError


def run_directory(checkpoint: Path) -> Path:
    """<run_dir>/checkpoints/x.ckpt -> <run_dir>; a checkpoint kept elsewhere -> its own folder."""
    folder = checkpoint.resolve().parent
    return folder.parent if folder.name == "checkpoints" else folder


def analyse(checkpoint: str | Path, attention: bool = False, batch: int = 8, out: str | Path | None = None) -> str:
    """Rebuild the run from `checkpoint`, run its first `batch` test items (validation without a test
    split) through it and write what was asked for; returns the lines to print."""
    if not attention:
        raise UserError("nothing to analyse: say what to record, e.g. "
                        f"python -m labformer analyse {checkpoint} --attention")
    if batch < 1:
        raise UserError(f"--batch {batch}: give the number of items to analyse, at least 1")
    checkpoint = Path(checkpoint)
    run = rebuild(checkpoint)
    found = find_attention(run.module)
    if not found.recorded:  # before any data is read
        raise nothing_to_record(run.config.model, found)
    split, inputs = first_items(run.datamodule, batch)
    layers = record_attention(run.module, inputs, found)
    if not layers:
        raise nothing_to_record(run.config.model, found)

    out_dir = Path(out) if out else run_directory(checkpoint)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = run.config
    items, heads = layers[0][1].shape[0], max(p.shape[1] for _, p in layers)
    title = (f"attention of {split} item 0 (query x key)\n"
             f"model={cfg.model.name} data={cfg.data.name}\n{checkpoint.name}")
    png = plot_maps(layers, out_dir, title)
    npz = write_arrays(layers, out_dir)
    short = f" (the split holds only {items})" if items < batch else ""
    lines = [f"attention of {len(layers)} layers, up to {heads} heads, on the first {items} {split} items"
             f"{short} of data={cfg.data.name}, model={cfg.model.name} from {checkpoint}"]
    lines += found.skipped_lines()
    lines += [f"  layer{i}: {name} {list(probs.shape)}" for i, (name, probs) in enumerate(layers)]
    lines += [f"wrote {png}", f"wrote {npz}"]
    logged = log_to_wandb(png, cfg, run_directory(checkpoint))
    if logged:
        lines.append(logged)
    return "\n".join(lines)
