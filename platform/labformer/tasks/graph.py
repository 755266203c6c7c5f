"""Graph learning: node- or graph-level classification or regression with any graph backbone.

    Batch -> backbone -> node features[N,D] -> (graph level: pooled per graph [B,D]) -> head -> outputs

The data decide the level (`datamodule.level`), the number of outputs (`num_classes`: classes,
labels or regression targets) and the headline metric (`datamodule.metric`, tasks/graph_metrics.py:
accuracy, balanced_accuracy - the class-averaged accuracy of the SBM benchmarks - or auroc with
cross-entropy; average_precision, multilabel with BCE-with-logits; mae, regression with the L1
loss). The headline is logged twice: under its own name (`val/acc`, `val/bal_acc`, `val/auroc`,
`val/ap`, `val/mae`) and as `val/score`, which `task.monitor` watches, so one task config picks
the best checkpoint on every dataset; its direction follows the data's metric (`min` for mae,
settled in `resolve_monitor` before the run writes anything). Transductive batches carry a
boolean `mask`: only those nodes enter the loss and the metrics.

A backbone that needs preprocessing (e.g. Exphormer's expander edges) exposes it as
`data_transform` (models/graph/base.py); `connect` hands it to the DataModule, which
computes and caches it once, and refuses graphs above the backbone's `max_nodes`.
"""
from __future__ import annotations

from typing import Any

import logging

import lightning as L
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch_geometric.data import Batch
from torch_geometric.nn import global_add_pool, global_max_pool, global_mean_pool
from torchmetrics import MetricCollection

from labformer.errors import UserError
from labformer.models.graph import base as contract
from labformer.registry import register
from labformer.tasks.base import Task
from labformer.tasks.graph_metrics import METRIC_NAMES, build_metrics, kind_of, mode_of

log = logging.getLogger("labformer")
POOLING = {"mean": global_mean_pool, "sum": global_add_pool, "max": global_max_pool}


def batch_statistics_only(module: nn.Module) -> None:
    """BatchNorm without running statistics: it normalises with the batch's own in eval too.

    On one graph trained full-batch (Cora, the heterophilous graphs) every step, validation
    and test see the very same batch, so its statistics are exact; running averages instead
    trail the activations by ~1/momentum steps, i.e. tens of epochs at one step per epoch,
    and a fast-moving model (Polynormer's polynomial gating) then predicts one class in eval.
    """
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.track_running_stats = False
            m.running_mean = m.running_var = m.num_batches_tracked = None


def balanced_weights(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Weight of class c = share of the batch's targets that are *not* c (0 for absent classes).

    The loss of the SBM benchmarks (Dwivedi et al.): on PATTERN 84% of nodes are class 0, and
    an unweighted loss settles on predicting it everywhere before any structure is learnt.
    """
    counts = torch.bincount(target, minlength=num_classes).float()
    return (target.numel() - counts) / target.numel() * (counts > 0)


@register("graph", task="graph", kind="task", args=dict(weight_decay=1e-5))
class GraphTask(Task):
    MONITOR = ("val/score", "max")
    BACKBONE_INPUTS = contract.INPUTS
    HEAD_INPUTS = {"num_classes": "num_classes", "level": "level", "metric": "metric",
                   "transductive": "transductive"}

    def __init__(self, backbone: nn.Module, num_classes: int, level: str = "node", metric: str = "accuracy",
                 pooling: str = "mean", label_smoothing: float = 0.0, head_dropout: float = 0.0,
                 head: str = "linear", transductive: bool = False, class_weights: str = "none", **base: Any) -> None:
        """pooling: mean | sum | max over each graph's nodes (graph-level data); class_weights: none |
        balanced (each class weighted by the share of the other classes in the batch, the SBM
        benchmarks' loss); head: linear (on the pooled or node features) | none (the backbone
        outputs the class scores, e.g. gcn with model.out_dim)."""
        super().__init__(backbone, **base)
        if transductive:
            batch_statistics_only(backbone)
        if level not in ("node", "graph"):
            raise UserError(f"graph task level must be node or graph, got '{level}'")
        if pooling not in POOLING:
            raise UserError(f"task.pooling={pooling} is unknown; one of {', '.join(POOLING)}")
        if class_weights not in ("none", "balanced"):
            raise UserError(f"task.class_weights={class_weights} is unknown; use none or balanced")
        self.kind = kind_of(metric)
        if self.kind != "classes" and (class_weights != "none" or label_smoothing):
            raise UserError(f"task.class_weights and task.label_smoothing weigh single-label classes; metric "
                            f"{metric} is {self.kind}. Fix: leave them at none and 0")
        self.level, self.metric, self.pooling, self.class_weights = level, metric, pooling, class_weights
        self.num_classes, self.label_smoothing = num_classes, label_smoothing
        dim = backbone.num_features
        if head not in ("linear", "none"):
            raise UserError(f"task.head={head} is unknown; use linear or none")
        if head == "none" and dim != num_classes:
            raise UserError(f"task.head=none needs a backbone that outputs the {num_classes} class scores, "
                            f"but it outputs {dim} features. "
                            f"Fix: model.out_dim={num_classes} (gcn) or task.head=linear")
        # none: the backbone's last layer already scores the classes (e.g. the GCN paper's model).
        self.head = nn.Sequential(nn.Dropout(head_dropout), nn.Linear(dim, num_classes)) if head == "linear" \
            else nn.Identity()
        self.score_name = METRIC_NAMES[metric]
        metrics = build_metrics(metric, num_classes)
        self.metrics = nn.ModuleDict({f"{s}_metrics": MetricCollection(metrics).clone(prefix=f"{s}/")
                                      for s in ("train", "val", "test")})

    @classmethod
    def resolve_monitor(cls, cfg: Any, datamodule: L.LightningDataModule) -> tuple[str, str]:
        """Watching the headline (val/score or its own name), the data's metric sets the direction:
        min for an error (mae), max for a score, whatever task.mode says."""
        monitor, mode = super().resolve_monitor(cfg, datamodule)
        metric = getattr(datamodule, "metric", "accuracy")
        if monitor in ("val/score", f"val/{METRIC_NAMES.get(metric, metric)}") and mode != mode_of(metric):
            log.info("%s is scored by %s (%s is better): %s picks the best checkpoint with mode %s", cfg.data.name,
                     metric, "lower" if mode_of(metric) == "min" else "higher", monitor, mode_of(metric))
            return monitor, mode_of(metric)
        return monitor, mode

    @classmethod
    def connect(cls, backbone: contract.GraphBackbone, datamodule: L.LightningDataModule) -> None:
        datamodule.use_backbone(backbone)

    def on_train_epoch_start(self) -> None:
        self.backbone.set_epoch(self.current_epoch)  # e.g. Polynormer's local-only warm-up

    def forward(self, batch: Batch) -> torch.Tensor:
        h = self.backbone(batch)
        if self.level == "graph":
            h = POOLING[self.pooling](h, batch.batch, size=batch.num_graphs)
        return self.head(h)

    def step(self, batch: Batch, stage: str) -> torch.Tensor:
        logits = self(batch)
        if self.kind == "classes":
            target = batch.y.view(-1)
        else:  # one row of labels or targets per graph (or node): [B, num_classes]
            target = batch.y.view(logits.shape[0], -1)
            if target.shape != logits.shape:
                raise UserError(f"the data give {target.shape[1]} {self.kind} targets per "
                                f"{self.level}, the head outputs {logits.shape[1]}; is num_classes right?")
        mask = getattr(batch, "mask", None)
        if mask is not None and self.level == "node":
            logits, target = logits[mask], target[mask]
        loss, preds, truth = self.loss(logits, target, stage)
        metrics = self.metrics[f"{stage}_metrics"]
        for name, metric in metrics.items():
            metric.update(preds[:, 1] if name.endswith("auroc") else preds, truth)
        n = int(target.shape[0])
        self.log(f"{stage}/loss", loss, prog_bar=True, on_step=stage == "train", on_epoch=True, batch_size=n,
                 sync_dist=stage != "train")
        self.log_dict(metrics, prog_bar=True, on_step=False, on_epoch=True, batch_size=n)
        self.log(f"{stage}/score", metrics[f"{stage}/{self.score_name}"], on_step=False, on_epoch=True,
                 batch_size=n)
        return loss

    def loss(self, logits: torch.Tensor, target: torch.Tensor,
             stage: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, what the metrics read, their targets) for the data's kind of target."""
        if self.kind == "regression":
            return F.l1_loss(logits.float(), target.float()), logits.detach().float(), target.float()
        if self.kind == "multilabel":
            loss = F.binary_cross_entropy_with_logits(logits.float(), target.float())
            return loss, logits.detach().float().sigmoid(), target.long()
        smoothing = self.label_smoothing if stage == "train" else 0.0
        weight = balanced_weights(target, self.num_classes) if self.class_weights == "balanced" else None
        loss = F.cross_entropy(logits, target, weight=weight, label_smoothing=smoothing)
        return loss, logits.detach().float().softmax(-1), target
