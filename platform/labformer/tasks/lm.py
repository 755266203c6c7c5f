"""Language modelling: next-token prediction with a tied head, or sequence classification.

causal_lm:       tokens[B,T] -> backbone -> hidden[B,T,D] -> head (tied to the token
                 embedding) -> logits[B,T,V]; cross-entropy on the next token.
                 Metrics: loss (nats/token), ppl = exp(loss), bpc = loss / ln 2 * tokens per
                 character (= bits per token for character-level data), tokens per second.
classification:  the backbone runs as a bidirectional encoder (built with causal=false), its
                 hidden states are mean-pooled over the sequence, a linear head gives logits.

The data decide the mode (`datamodule.objective`), so `task=lm data=markov_classes` needs no
other switch. Validation loss is averaged over tokens (every token weighs the same,
however the windows are batched).
"""
from __future__ import annotations

import logging
import math
import time
from typing import Any

import lightning as L
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy

from labformer.callbacks.text_samples import TextSamples, UnitNormWeights
from labformer.data.lm.base import IGNORE
from labformer.errors import UserError
from labformer.models.lm import base as contract
from labformer.registry import register
from labformer.tasks.base import Task

log = logging.getLogger("labformer")
OBJECTIVES = ("causal_lm", "classification")


class TokenLossMetric(Metric):
    """A function of the token-weighted mean loss: `ppl` = exp(mean), `bpc` = mean / ln 2 * factor.

    A Metric (not a value logged at epoch end) so Lightning computes it, DDP-summed, together
    with the other epoch metrics, before any callback reads them.
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind, self.factor = kind, 1.0  # factor: tokens per character (bpc)
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, loss: torch.Tensor, tokens: int) -> None:
        self.total += loss.double() * tokens
        self.count += tokens

    def compute(self) -> torch.Tensor:
        mean = (self.total / self.count.clamp_min(1)).float()
        return torch.exp(mean) if self.kind == "ppl" else mean / math.log(2) * self.factor


# nanoGPT's recipe for small models: AdamW (0.9, 0.99), decay 0.1 on matrices and embeddings,
# 20 warm-up steps, cosine to lr / 10.
@register("lm", task="lm", kind="task", args=dict(weight_decay=0.1, betas=[0.9, 0.99], warmup_epochs=0,
                                                   warmup_steps=20, min_lr=1e-4))
class LMTask(Task):
    MONITOR = ("val/loss", "min")  # nats per token, averaged over every validation token
    BACKBONE_INPUTS = contract.INPUTS
    HEAD_INPUTS = {"vocab_size": "vocab_size", "objective": "objective", "num_classes": "num_classes"}
    data_keys = ("val_batches",)  # task config keys the DataModule consumes

    @classmethod
    def settings(cls, defaults: dict[str, Any]) -> dict[str, Any]:
        """val_batches: null validates on the whole validation split (the exact loss); N estimates it from N
        random batches each time (nanoGPT's eval_iters), faster and noisier; the test pass stays exact."""
        return {**super().settings(defaults), "val_batches": None}

    @classmethod
    def wrap_datamodule(cls, datamodule: L.LightningDataModule, cfg: Any) -> L.LightningDataModule:
        val_batches = cfg.task.get("val_batches")
        if val_batches is not None:
            if not isinstance(val_batches, int) or isinstance(val_batches, bool) or val_batches < 1:
                raise UserError(f"task.val_batches={val_batches} must be a number of batches >= 1, "
                                "or null for the exact validation loss over the whole split")
            log.warning("val/* are estimates from %d random batches of the validation split at each validation "
                        "(task.val_batches=%d); test/* are exact. task.val_batches=null for the exact loss",
                        val_batches, val_batches)
        if hasattr(datamodule, "val_batches"):
            datamodule.val_batches = val_batches
        return datamodule

    def __init__(self, backbone: contract.LMBackbone, vocab_size: int, objective: str = "causal_lm",
                 num_classes: int | None = None, tie_weights: bool = True, sample_tokens: int = 100,
                 sample_temperature: float = 0.8, sample_top_k: int | None = 20, sample_every: int = 1,
                 **base: Any) -> None:
        """tie_weights: the output head is the token embedding (unless the backbone opts out);
        sample_tokens: text generated after every `sample_every`-th validation (0: none), logged
        and written to samples.txt."""
        super().__init__(backbone, **base)
        if objective not in OBJECTIVES:
            raise UserError(f"unknown LM objective '{objective}'; the data must declare one of {OBJECTIVES}")
        self.objective, self.vocab_size = objective, vocab_size
        dim = backbone.num_features
        if objective == "causal_lm":
            self.head = nn.Linear(dim, vocab_size, bias=False)
            if tie_weights and backbone.tie_embeddings:
                self.head.weight = backbone.token_embedding.weight  # one matrix reads and writes tokens
            elif backbone.normalized_head:
                with torch.no_grad():
                    self.head.weight.copy_(F.normalize(torch.randn_like(self.head.weight), dim=1))
            # Keys get a suffix: "train" is an nn.Module method name.
            self.token_metrics = nn.ModuleDict({f"{s}_{k}": TokenLossMetric(k) for s in ("val", "test")
                                                for k in ("ppl", "bpc")})
        else:
            if not num_classes:
                raise UserError("the classification mode needs data with num_classes")
            self.head = nn.Linear(dim, num_classes)
            # Keys get a suffix: "train" is an nn.Module method name.
            self.acc = nn.ModuleDict({f"{s}_acc": MulticlassAccuracy(num_classes) for s in ("train", "val", "test")})
        self.sampling = dict(num_tokens=sample_tokens, temperature=sample_temperature, top_k=sample_top_k,
                             every_n_validations=sample_every)
        self._tokens, self._seconds, self._t0 = 0, 0.0, 0.0

    def configure_callbacks(self) -> list[L.Callback]:
        callbacks = super().configure_callbacks()
        if self.objective == "causal_lm" and self.sampling["num_tokens"] > 0:
            callbacks.append(TextSamples(**self.sampling))
        if self.backbone.normalizes_weights:
            callbacks.append(UnitNormWeights())
        return callbacks

    # -- forward ------------------------------------------------------------------------
    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(tokens)
        if self.objective == "classification":
            return self.head(hidden.mean(dim=1))
        return self.backbone.scale_logits(self.head(hidden))

    forward = logits

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, num_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Append `num_tokens` sampled tokens to `prompt` [B, T0] (context cropped to max_len)."""
        was_training = self.training
        self.eval()
        ids, max_len = prompt, self.backbone.max_len
        for _ in range(num_tokens):
            logits = self.logits(ids[:, -max_len:])[:, -1].float()
            if temperature <= 0:
                nxt = logits.argmax(-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k:
                    kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                nxt = torch.multinomial(logits.softmax(-1), 1, generator=generator)
            ids = torch.cat([ids, nxt], dim=1)
        self.train(was_training)
        return ids

    # -- steps ---------------------------------------------------------------------------
    def step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        logits = self.logits(x)
        if self.objective == "classification":
            loss = F.cross_entropy(logits, y)
            acc = self.acc[f"{stage}_acc"]
            self.update_metric(acc, logits.detach(), y, stage)
            self.log(f"{stage}/loss", loss, prog_bar=True, on_step=stage == "train", on_epoch=True,
                     batch_size=len(y), sync_dist=stage != "train")
            self.log(f"{stage}/acc", acc, prog_bar=True, on_step=False, on_epoch=True)
            return loss
        loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), ignore_index=IGNORE)
        tokens = int((y != IGNORE).sum())
        # batch_size=tokens: Lightning's epoch mean (summed over DDP ranks) weighs every token alike.
        self.log(f"{stage}/loss", loss, prog_bar=True, on_step=stage == "train", on_epoch=True, batch_size=tokens,
                 sync_dist=stage != "train")
        if stage != "train":
            dm = self.trainer.datamodule if self._trainer is not None else None
            for kind in ("ppl", "bpc"):
                metric = self.token_metrics[f"{stage}_{kind}"]
                if kind == "bpc" and hasattr(dm, "tokens_per_character"):
                    metric.factor = dm.tokens_per_character(stage)
                metric.update(loss.detach(), tokens)
                self.log(f"{stage}/{kind}", metric, on_step=False, on_epoch=True)
        return loss

    # -- tokens per second (forward + backward + optimiser step) ---------------------------
    def on_train_epoch_start(self) -> None:
        self._tokens, self._seconds = 0, 0.0

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._seconds += time.perf_counter() - self._t0
        self._tokens += batch[0].numel() * self.trainer.world_size

    def on_train_epoch_end(self) -> None:
        if self._seconds:
            self.log("perf/train_tokens_per_sec", self._tokens / self._seconds, rank_zero_only=True)
