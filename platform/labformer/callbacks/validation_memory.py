"""The validation metrics of each validation this process ran, for a test split that is the validation split.

Some data have no test split of their own (tiny-shakespeare: test = validation). Testing the best
checkpoint there repeats, on the same weights and the same items, a validation already run: the
pipeline answers it from here instead (`answer_test`), and runs the test pass otherwise.
"""
from __future__ import annotations

import lightning as L


class ValidationMemory(L.Callback):
    def __init__(self) -> None:
        self.validations: list[dict[str, float]] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.validations.append({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")})

    def answer_test(self, trainer: L.Trainer, datamodule: L.LightningDataModule,
                    monitor: str) -> dict[str, float] | None:
        """test/* of the best checkpoint read off its validation, when that is exactly what a test pass
        would compute: the test split is the validation split, validation covered all of it, and the best
        checkpoint's validation ran in this process. None otherwise."""
        checkpoint = trainer.checkpoint_callback
        if not getattr(datamodule, "test_is_val", False) or getattr(datamodule, "val_batches", None):
            return None
        if trainer.limit_val_batches != 1.0 or checkpoint is None or checkpoint.best_model_score is None:
            return None
        best = float(checkpoint.best_model_score)
        match = next((v for v in self.validations if v.get(monitor) == best), None)  # the first, as the checkpointer
        if match is None:  # e.g. a resumed run whose best epoch ran before the resume
            return None
        return {"test/" + k.removeprefix("val/"): v for k, v in match.items() if not k.endswith("_step")}
