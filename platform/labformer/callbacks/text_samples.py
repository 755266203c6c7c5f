"""LM callbacks the `lm` task attaches itself (via `configure_callbacks`).

TextSamples: after each validation, generate text from a prompt and log it (W&B table,
TensorBoard text, and `<run_dir>/samples.txt`), so a run shows what the model writes.
UnitNormWeights: after every optimiser step, put nGPT's weights back on the unit sphere.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch

log = logging.getLogger("labformer")


class TextSamples(L.Callback):
    def __init__(self, num_tokens: int = 200, temperature: float = 0.8, top_k: int | None = 20,
                 every_n_validations: int = 1) -> None:
        self.num_tokens, self.temperature, self.top_k = num_tokens, temperature, top_k
        self.every = max(1, every_n_validations)
        self.validations = 0

    def state_dict(self) -> dict[str, Any]:
        return {"validations": self.validations}  # a resumed run keeps sampling on the same validations

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.validations = state_dict.get("validations", 0)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or self.num_tokens <= 0:
            return
        self.validations += 1
        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "encode") or (self.validations - 1) % self.every:
            return
        prompt = dm.sample_prompt()
        # Its own generator: sampling must not move the training RNG (resumed runs stay identical).
        generator = torch.Generator(device=pl_module.device).manual_seed(trainer.global_step)
        ids = pl_module.generate(dm.encode(prompt)[None].to(pl_module.device), self.num_tokens,
                                 self.temperature, self.top_k, generator)
        text = dm.decode(ids[0].tolist())
        self._write(trainer, text)

    def _write(self, trainer: L.Trainer, text: str) -> None:
        step = trainer.global_step
        log.info("sample at step %d:\n%s", step, text)
        for logger in trainer.loggers:
            if hasattr(logger, "log_text"):  # W&B
                logger.log_text(key="samples", columns=["step", "text"], data=[[step, text]], step=step)
            elif hasattr(getattr(logger, "experiment", None), "add_text"):  # TensorBoard
                logger.experiment.add_text("samples", text, global_step=step)
        root = Path(trainer.default_root_dir)
        if root.is_dir():
            with open(root / "samples.txt", "a", encoding="utf-8") as f:
                f.write(f"=== step {step}\n{text}\n\n")


class UnitNormWeights(L.Callback):
    """Calls `backbone.normalize_weights()` (and normalises the head rows) after each optimiser step."""

    def __init__(self) -> None:
        self._last_step = -1

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.global_step == self._last_step:  # accumulating gradients: no step was taken
            return
        self._last_step = trainer.global_step
        renormalize(pl_module)


@torch.no_grad()
def renormalize(pl_module: L.LightningModule) -> None:
    pl_module.backbone.normalize_weights()
    if pl_module.backbone.normalized_head:
        pl_module.head.weight.copy_(torch.nn.functional.normalize(pl_module.head.weight, dim=1))
