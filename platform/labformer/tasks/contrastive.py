"""Siamese / self-supervised learning with any family's backbone as the encoder.

`task=contrastive objective=<simsiam|msn|infonce|triplet|pair|cropmae> model=<backbone> data=<name>`:
the data name decides the modality (digits -> vision, mutag -> graph, ...), the backbone
comes from that family's registry, and the objective (registry kind "objective") owns
its projector / predictor / prototypes / EMA target. Evaluation needs no labels to train:
- validation: the objective's loss on seeded views; kNN top-1 of the clean validation
  items against the clean training items (KNNMonitor); the embedding spread (collapse)
- test: kNN top-1, a linear probe on the frozen encoder, and N-way K-shot episode
  accuracy when the dataset's test classes are held out of training (Omniglot)
- validation and test, where the data has fixed labelled pairs (long_doc_pairs): match_auroc and
  match_acc of the objective's pair score on them (evaluation/pairs.py)
"""
from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch
import torch.nn as nn
from omegaconf import DictConfig, OmegaConf

from labformer import registry
from labformer.data.contrastive.datamodule import ContrastiveDataModule, PKBatchSampler, modality_of
from labformer.models.contrastive.encoder import Encoder
from labformer.registry import register
from labformer.tasks.base import Task
from labformer.utils.arguments import parameters_of
from labformer.evaluation import embedding as embedding_eval

log = logging.getLogger("labformer")


# N-way K-shot evaluation on held-out classes (used when the data has them)
EPISODES = {"n_way": 20, "k_shot": 1, "episodes": 200, "seed": 0}


@register("contrastive", task="contrastive", kind="task")
class ContrastiveTask(Task):
    MONITOR = ("val/knn_acc", "max")  # kNN top-1 of the frozen embeddings (class-disjoint data: val/oneshot_acc)
    HEAD_INPUTS = {"modality": "modality", "class_disjoint": "class_disjoint", "num_features": "encoder_features"}
    CONFIG_INPUTS = ("objective",)
    data_keys = ("views", "pk_sampler")  # task config keys the DataModule consumes

    def __init__(self, backbone: nn.Module, objective: dict[str, Any], modality: str,
                 num_features: int | None = None, knn_k: int = 5, probe: bool = True,
                 episodes: dict[str, int] | None = None, class_disjoint: bool = False, allow_collapse: bool = False,
                 **base: Any) -> None:
        """knn_k: neighbours of the kNN monitor and of test/knn_acc; probe: test/probe_acc, a logistic
        regression on the frozen training embeddings; episodes: n_way, k_shot, episodes, seed;
        allow_collapse: go on when the embeddings collapse (by default the run stops with exit code 3
        and names the settings to change)."""
        super().__init__(backbone, **base)
        self.encoder = Encoder(backbone, modality, num_features)
        kwargs = {k: v for k, v in objective.items() if k != "name"}
        self.objective = registry.create("contrastive", objective["name"], kind="objective",
                                         feature_dim=self.encoder.num_features, **kwargs)
        self.objective.attach(self.encoder)
        self.knn_k, self.probe, self.class_disjoint = knn_k, probe, class_disjoint
        self.allow_collapse, self.objective_config = allow_collapse, dict(objective)
        self.episodes = {**EPISODES, **(episodes or {})}
        self._features: dict[str, list[torch.Tensor]] = {}

    # -- how the builders assemble a contrastive run ----------------------------------------
    @classmethod
    def settings(cls, defaults: dict[str, Any]) -> dict[str, Any]:
        """Besides the constructor's: the episodes, each modality's two-view augmentation (from the
        views registry, e.g. task.views.graph.edge_drop) and the P x K sampler of triplet / pair."""
        views = {e.name: {k: v for k, v in e.defaults().items() if k != "base"} for e in registry.entries("views")}
        sampler = {k: p.default for k, (p, _) in parameters_of(PKBatchSampler)[0].items()
                   if k in ("classes", "per_class")}
        return {**super().settings(defaults), "episodes": dict(EPISODES), "views": views, "pk_sampler": sampler}

    @classmethod
    def data_family(cls, cfg: DictConfig) -> str:
        return modality_of(cfg.data.name)[0]

    @classmethod
    def backbone_family(cls, cfg: DictConfig) -> str:
        return modality_of(cfg.data.name)[1]

    @classmethod
    def wrap_datamodule(cls, datamodule: L.LightningDataModule, cfg: DictConfig) -> L.LightningDataModule:
        objective = registry.get(cfg.objective.name, kind="objective", task="contrastive")
        pk = OmegaConf.to_container(cfg.task.pk_sampler) if objective.meta.get("needs_labels") else None
        modality = modality_of(cfg.data.name)[1]
        views = cfg.task.views.get(modality)
        return ContrastiveDataModule(datamodule, modality, pk_sampler=pk, eval_seed=int(cfg.seed),
                                     views=OmegaConf.to_container(views) if views is not None else None)

    @classmethod
    def resolve_monitor(cls, cfg: DictConfig, datamodule: L.LightningDataModule) -> tuple[str, str]:
        if cfg.task.monitor == "val/knn_acc":  # the default: what the data can actually report
            if not datamodule.labelled:
                log.info("%s has no labels: no kNN monitor; val/loss picks the best checkpoint", cfg.data.name)
                return "val/loss", "min"
            if datamodule.class_disjoint:
                log.info("%s holds out its validation classes: val/oneshot_acc (episodes) picks the best "
                         "checkpoint", cfg.data.name)
                return "val/oneshot_acc", "max"
        return super().resolve_monitor(cfg, datamodule)

    @classmethod
    def backbone_inputs(cls, datamodule: L.LightningDataModule) -> dict[str, Any]:
        return cls._family(datamodule).backbone_inputs(datamodule)

    @classmethod
    def connect(cls, backbone: nn.Module, datamodule: L.LightningDataModule) -> None:
        # e.g. a graph encoder's expander edges or shortest paths, computed by the wrapped DataModule
        cls._family(datamodule).connect(backbone, datamodule.base)

    @staticmethod
    def _family(datamodule: L.LightningDataModule) -> type[Task]:
        return registry.get(datamodule.modality, kind="task").builder

    def configure_callbacks(self) -> list[L.Callback]:
        from labformer.callbacks.embedding_projection import EmbeddingProjection
        from labformer.callbacks.knn_monitor import KNNMonitor

        return [*super().configure_callbacks(), KNNMonitor(), EmbeddingProjection(), *self.objective.callbacks()]

    # -- steps -------------------------------------------------------------------------------
    def forward(self, x: Any) -> torch.Tensor:
        return self.encoder(x)

    def step(self, batch: dict[str, Any], stage: str) -> torch.Tensor | None:
        loss = None
        n = int(batch["y"].shape[0])
        # Evaluation batches come in order: one of a single class has no negative for triplet/pair.
        if stage == "train" or not self.objective.needs_labels or len(batch["y"].unique()) > 1:
            loss, extra = self.objective.loss(self.encoder, batch)
            self.log(f"{stage}/loss", loss, prog_bar=True, on_step=stage == "train", on_epoch=True, batch_size=n,
                     sync_dist=stage != "train")
            for key, value in extra.items():
                self.log(f"{stage}/{key}", value, on_step=False, on_epoch=True, batch_size=n,
                         sync_dist=stage != "train")
        if stage != "train":
            with torch.no_grad():
                self._features.setdefault(stage, []).append(self.encoder(batch["x"]).float().cpu())
                self._features.setdefault(f"{stage}_y", []).append(batch["y"].cpu())
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.objective.after_step(self.encoder)  # after the optimiser step: EMA targets follow

    def on_validation_epoch_start(self) -> None:
        self._features = {}

    on_test_epoch_start = on_validation_epoch_start

    def collected(self, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and labels of the clean items of `stage`, gathered over all ranks."""
        feats = torch.cat(self._features.get(stage, [torch.zeros(0, self.encoder.num_features)]))
        labels = torch.cat(self._features.get(f"{stage}_y", [torch.zeros(0, dtype=torch.long)]))
        if self.trainer.world_size > 1:
            feats = self.all_gather(feats.to(self.device)).flatten(0, 1).cpu()
            labels = self.all_gather(labels.to(self.device)).flatten(0, 1).cpu()
        return feats, labels

    @torch.no_grad()
    def embed_loader(self, loader) -> tuple[torch.Tensor, torch.Tensor]:
        was_training = self.training
        self.eval()
        feats, labels = [], []
        for batch in loader:
            batch = self.transfer_batch_to_device(batch, self.device, 0)
            feats.append(self.encoder(batch["x"]).float().cpu())
            labels.append(batch["y"].cpu())
        self.train(was_training)
        return torch.cat(feats), torch.cat(labels)

    def on_test_epoch_end(self) -> None:
        feats, labels = self.collected("test")
        metrics: dict[str, float] = {"test/embedding_std": embedding_eval.embedding_std(feats)}
        labelled = bool((labels >= 0).all()) and len(labels) > 0
        if labelled and not self.class_disjoint:
            bank, bank_labels = self.embed_loader(self.trainer.datamodule.bank_dataloader())
            metrics["test/knn_acc"] = embedding_eval.knn_accuracy(bank, bank_labels, feats, labels, self.knn_k)
            if self.probe:
                metrics["test/probe_acc"] = embedding_eval.linear_probe(bank, bank_labels, feats, labels)
        if labelled and self.class_disjoint and self.episodes:
            metrics[f"test/oneshot_{self.episodes['n_way']}way_acc"] = self.episode_accuracy("test", feats, labels)
        runs = getattr(self.trainer.datamodule, "oneshot_runs", lambda: None)()
        if runs:  # Lake et al.'s 20 official runs (Omniglot's data.official_runs=true)
            from labformer.evaluation.episodes import fixed_runs_accuracy

            encode = lambda x: self.embed_loader([{"x": x, "y": torch.zeros(len(x), dtype=torch.long)}])[0]  # noqa: E731
            metrics["test/official_oneshot_acc"] = fixed_runs_accuracy(encode, runs, score=self.objective.score)
        metrics.update(self.pair_metrics("test", feats, labels))
        for key, value in metrics.items():
            self.log(key, value, sync_dist=False, rank_zero_only=True)
        self.test_features = (feats, labels)  # for the embedding picture

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking and getattr(self.trainer.datamodule, "pairs", None) is not None:
            for key, value in self.pair_metrics("val", *self.collected("val")).items():
                self.log(key, value)

    def pair_metrics(self, split: str, feats: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """AUROC and accuracy of the objective's pair score on the data's fixed pairs of `split`, where it has
        them (long_doc_pairs) and the features are in its order (one process); otherwise none."""
        pairs = getattr(self.trainer.datamodule, "pairs", None)
        if pairs is None or not torch.equal(self.trainer.datamodule.labels(split)[:len(labels)], labels):
            return {}
        from labformer.evaluation.pairs import pair_metrics

        return {f"{split}/{k}": v for k, v in pair_metrics(feats, *pairs(split), score=self.objective.score).items()}

    def episode_accuracy(self, split: str, feats: torch.Tensor, labels: torch.Tensor) -> float:
        from labformer.evaluation.episodes import episode_accuracy, sample_episodes

        groups = getattr(self.trainer.datamodule, "groups", lambda s: None)(split)
        if groups is not None:
            groups = groups[:len(labels)]  # the loader is in order; limit_*_batches may stop it early
        settings = dict(self.episodes)
        settings["n_way"] = min(settings["n_way"], len(labels.unique()))  # few validation classes
        episodes = sample_episodes(labels.numpy(), groups=groups, **settings)
        return episode_accuracy(feats, labels, episodes, score=self.objective.score)
