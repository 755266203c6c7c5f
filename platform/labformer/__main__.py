"""`python -m labformer list [--task T] [--kind K] [--pattern P]`: what the registry holds."""
from __future__ import annotations

import argparse
import sys

from omegaconf import OmegaConf

from labformer import CONF_DIR, registry


def parameter_count(entry: registry.Entry) -> str:
    """Parameters of a vision backbone at its config's defaults (others: not built here)."""
    path = entry.config_file(CONF_DIR)
    kwargs = OmegaConf.to_container(OmegaConf.load(path)) if path.is_file() else {}
    kwargs.pop("name", None)
    try:
        import torch

        with torch.device("meta"):  # no memory, no init time
            model = entry.builder(**kwargs)
        return f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M"
    except Exception as e:  # a backbone that needs inputs we cannot guess says so
        return f"? ({type(e).__name__})"


def list_registry(task: str | None, kind: str | None, pattern: str | None) -> str:
    lines = []
    for k in [kind] if kind else registry.kinds():
        found = registry.entries(k, task, pattern)
        if not found:
            continue
        lines.append(f"\n{k} ({len(found)})")
        header = f"  {'name':22s} {'tasks':28s} {'params':>9s}  config" if k == "backbone" else \
            f"  {'name':22s} {'tasks':28s} config"
        lines.append(header)
        for e in found:
            path = e.config_file(CONF_DIR)
            where = str(path.relative_to(CONF_DIR.parent)) if path.is_file() else "-"
            tasks = ",".join(e.tasks)
            if k == "backbone":
                lines.append(f"  {e.name:22s} {tasks:28s} {parameter_count(e):>9s}  {where}")
            else:
                lines.append(f"  {e.name:22s} {tasks:28s} {where}")
    return "\n".join(lines).lstrip("\n") or "nothing registered matches"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labformer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="print the registry: backbones, datasets, tasks, loggers, ...")
    ls.add_argument("--task", help="only entries serving this task, e.g. vision")
    ls.add_argument("--kind", help="only this registry, e.g. backbone or dataset")
    ls.add_argument("--pattern", help="shell pattern on names, e.g. 'vit_*'")
    args = parser.parse_args(argv)
    if args.kind and args.kind not in registry.kinds():
        parser.error(f"unknown --kind {args.kind}; valid: {', '.join(registry.kinds())}")
    print(list_registry(args.task, args.kind, args.pattern))
    return 0


if __name__ == "__main__":
    sys.exit(main())
