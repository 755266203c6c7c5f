"""Expert utilisation of mixture-of-experts models (attached by the task when its backbone has
MoE layers): over the test pass, each layer's share of routed tokens (or slot weight) per
expert, averaged over batches; saved as `expert_load_test.png` and `expert_load_test.json` in
the run directory and logged to W&B as `test/expert_load`. A balanced layer sits at 1/E; an
expert near zero is dead, one far above is a hot spot."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import lightning as L
import torch

log = logging.getLogger("labformer")


def save_expert_load(loads: dict[str, list[float]], path: Path, title: str) -> Path:
    """One bar group per layer: the share of each expert."""
    from labformer.utils.forecast_plot import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * sum(len(v) for v in loads.values()) / 2), 3.5), dpi=120)
    x = 0
    for layer, shares in loads.items():
        ax.bar(range(x, x + len(shares)), shares, label=layer)
        ax.hlines(1 / len(shares), x - 0.4, x + len(shares) - 0.6, colors="k", linestyles="dotted")
        x += len(shares) + 1
    ax.set(title=title, xlabel="expert (grouped by layer; dotted: even share)", ylabel="share of routed tokens")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


class ExpertLoad(L.Callback):
    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.batches = 0

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.sums, self.batches = {}, 0

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        for i, layer in enumerate(pl_module.expert_layers()):
            if layer.load is not None:
                key = f"layer {i}"
                self.sums[key] = self.sums.get(key, 0) + layer.load.detach().float().cpu()
        self.batches += 1

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.sums or not trainer.is_global_zero:
            return
        loads = {k: (v / self.batches).tolist() for k, v in self.sums.items()}
        root = Path(trainer.default_root_dir)
        (root / "expert_load_test.json").write_text(json.dumps(loads, indent=1))
        path = save_expert_load(loads, root / "expert_load_test.png", f"expert load over {self.batches} test batches")
        log.info("expert load picture: %s", path)
        from lightning.pytorch.loggers import WandbLogger

        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="test/expert_load", images=[str(path)])
