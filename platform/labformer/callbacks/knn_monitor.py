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

from labformer.evaluation import embedding as embedding_eval

log = logging.getLogger("labformer")


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
        pl_module.log("val/embedding_std", embedding_eval.embedding_std(feats))
        if embedding_eval.collapsed(feats, self.collapse_fraction) and not self.warned:
            self.warned = True
            log.warning("embeddings collapsed at epoch %d: their spread (std of the normalised features) is "
                        "%.2e, under %g of the 1/sqrt(D) of well-spread features. Lower task.lr, or check "
                        "the objective's stop-gradient / predictor settings", trainer.current_epoch,
                        embedding_eval.embedding_std(feats), self.collapse_fraction)
        if not bool((labels >= 0).all()):
            return  # unlabelled data: the loss is all there is
        if pl_module.class_disjoint:
            if pl_module.episodes:
                pl_module.log("val/oneshot_acc", pl_module.episode_accuracy("val", feats, labels))
            return
        bank, bank_labels = pl_module.embed_loader(trainer.datamodule.bank_dataloader())
        pl_module.log("val/knn_acc", embedding_eval.knn_accuracy(bank, bank_labels, feats, labels, pl_module.knn_k),
                      prog_bar=True)
