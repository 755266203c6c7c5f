"""Train one run: `python train.py [task=...] [model=...] [data=...] [key=value ...]`.

See conf/train.yaml for every setting and `python -m labformer list` for the registry.
"""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from labformer.cli import check_overrides, exit_now, run_guarded
from labformer.config_store import store_registry_configs
from labformer.utils.run_identity import register_resolvers

register_resolvers()
store_registry_configs()  # model=, data=, objective= and the task settings, from the registry


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from labformer.pipeline import train

    # Sweepers (Optuna) read the monitored metric from the return value.
    return run_guarded(lambda: train(cfg).monitor_value)


if __name__ == "__main__":
    check_overrides("train")
    main()
    exit_now()  # errors exit through sys.exit inside main, with their own code
