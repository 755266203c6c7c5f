"""kNN monitor for self-supervised pretraining: how well the frozen embeddings classify now.

After each validation epoch: embed the training split without augmentation (the memory
bank), classify the clean validation items by their k nearest bank items (cosine), log
`val/knn_acc`; on datasets whose validation classes are held out of training (Omniglot),
log N-way K-shot episode accuracy instead. Also logs `val/embedding_std` and warns when
the embeddings collapse (every input mapped to about one point).
"""
from __future__ import annotations

import logging

import lightning as L

from labformer.errors import TrainingFailed
from labformer.evaluation import embedding as embedding_eval

log = logging.getLogger("labformer")


class EmbeddingCollapse(TrainingFailed):
    """Every input maps to about one point: the objective has stopped separating anything."""


def collapse_message(pl_module: L.LightningModule, epoch: int, spread: float, fraction: float) -> str:
    objective = dict(pl_module.objective_config)
    name = objective.pop("name", "?")
    settings = ", ".join(f"objective.{k}={v}" for k, v in objective.items()) or "none"
    return (f"the embeddings collapsed at epoch {epoch}: their spread (std of the normalised features) is "
            f"{spread:.2e}, under {fraction:g} of the 1/sqrt(D) of well-spread features, so every input maps to "
            f"about one point. Change: a lower task.lr (now {pl_module.lr:g}); the objective's settings "
            f"(objective={name}: {settings}; for triplet a larger objective.margin or "
            "objective.mining=semi_hard, for pair and triplet more classes per batch, task.pk_sampler.classes); "
            "stronger two-view augmentation (task.views.<modality>.*). task.allow_collapse=true goes on anyway")


class KNNMonitor(L.Callback):
    def __init__(self, collapse_fraction: float = 0.01) -> None:
        self.collapse_fraction = collapse_fraction
        self.warned = False

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        feats, labels = pl_module.collected("val")
        if len(feats) == 0:
            return
        spread = embedding_eval.embedding_std(feats)
        pl_module.log("val/embedding_std", spread)
        if embedding_eval.collapsed(feats, self.collapse_fraction) and not self.warned:
            message = collapse_message(pl_module, trainer.current_epoch, spread, self.collapse_fraction)
            if not pl_module.allow_collapse:
                raise EmbeddingCollapse(message)
            self.warned = True
            log.warning(message)
        if not bool((labels >= 0).all()):
            return  # unlabelled data: the loss is all there is
        if pl_module.class_disjoint:
            if pl_module.episodes:
                pl_module.log("val/oneshot_acc", pl_module.episode_accuracy("val", feats, labels))
            return
        bank, bank_labels = pl_module.embed_loader(trainer.datamodule.bank_dataloader())
        pl_module.log("val/knn_acc", embedding_eval.knn_accuracy(bank, bank_labels, feats, labels, pl_module.knn_k),
                      prog_bar=True)
