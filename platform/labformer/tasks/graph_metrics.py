"""The graph task's headline metrics: what each one measures, its loss, its logged name and its direction.

    accuracy / balanced_accuracy / auroc   single-label classes    cross-entropy      higher is better
    average_precision                       multilabel (0/1 each)   BCE with logits    higher is better
    mae                                     regression (T targets)  L1                 lower is better

The data declare the metric (`datamodule.metric`) and, as `num_classes`, the number of outputs: the
classes, the labels (multilabel) or the targets (regression). The average precision is torchmetrics'
MultilabelAveragePrecision, macro over the labels (LRGB's Peptides-func AP); the MAE is the mean of
|prediction - target| over every graph and target (ZINC, Peptides-struct).
"""
from __future__ import annotations

from typing import Any

from torchmetrics import MeanAbsoluteError
from torchmetrics.classification import BinaryAUROC, MulticlassAccuracy, MultilabelAveragePrecision

from labformer.errors import UserError

# metric -> the name it is logged under (<stage>/<name>, and again as <stage>/score)
METRIC_NAMES = {"accuracy": "acc", "balanced_accuracy": "bal_acc", "auroc": "auroc", "mae": "mae",
                "average_precision": "ap"}
LOWER_IS_BETTER = frozenset({"mae"})
KINDS = {"mae": "regression", "average_precision": "multilabel"}  # every other metric: single-label classes


def kind_of(metric: str) -> str:
    """classes | multilabel | regression: what the targets are, and so which loss the task uses."""
    if metric not in METRIC_NAMES:
        raise UserError(f"unknown graph metric '{metric}'; one of {', '.join(METRIC_NAMES)}")
    return KINDS.get(metric, "classes")


def mode_of(metric: str) -> str:
    """The direction of the metric: 'min' for errors, 'max' for scores."""
    return "min" if metric in LOWER_IS_BETTER else "max"


def build_metrics(metric: str, num_classes: int) -> dict[str, Any]:
    """The torchmetrics a stage keeps, by logged name (classification also reports plain accuracy)."""
    kind = kind_of(metric)
    if kind == "regression":
        return {"mae": MeanAbsoluteError()}
    if kind == "multilabel":
        if num_classes < 2:
            raise UserError(f"metric average_precision needs at least 2 labels; this dataset has {num_classes}")
        return {"ap": MultilabelAveragePrecision(num_labels=num_classes, average="macro")}
    out: dict[str, Any] = {"acc": MulticlassAccuracy(num_classes, average="micro")}
    if metric == "balanced_accuracy":
        out["bal_acc"] = MulticlassAccuracy(num_classes, average="macro")
    elif metric == "auroc":
        if num_classes != 2:
            raise UserError(f"metric auroc needs a binary task; this dataset has {num_classes} classes")
        out["auroc"] = BinaryAUROC()
    return out
