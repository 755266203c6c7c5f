"""Test a checkpoint: `python eval.py ckpt_path=<file> [split=val]`.

Task, model and data are rebuilt from the config stored inside the checkpoint.
"""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from labformer.cli import check_overrides, exit_now, run_guarded
from labformer.config_store import store_registry_configs
from labformer.utils.run_identity import register_resolvers

register_resolvers()
store_registry_configs()  # model=, data=, objective= and the task settings, from the registry


@hydra.main(config_path="conf", config_name="eval", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from labformer.pipeline import evaluate

    run_guarded(lambda: evaluate(cfg))


if __name__ == "__main__":
    check_overrides("eval")
    main()
    exit_now()  # errors exit through sys.exit inside main, with their own code
