"""Every objective trains with every vision backbone; whole runs on digits and Omniglot."""
from __future__ import annotations

import copy
import math

import pytest
import torch

from labformer import pipeline, registry
from labformer.errors import UserError
from labformer.models.contrastive.masking import is_vit
from labformer.tasks.contrastive import ContrastiveTask

from conftest import compose_config, fake_omniglot_runs, require_data

pytestmark = pytest.mark.usefixtures("one_torch_thread")
OBJECTIVES = registry.list_models(kind="objective")
SMALL = {"simsiam": {"proj_dim": 32, "pred_hidden": 8}, "infonce": {"proj_dim": 16, "proj_hidden": 32},
         "msn": {"proj_dim": 16, "proj_hidden": 32, "num_prototypes": 8}, "triplet": {}, "pair": {},
         "cropmae": {"decoder_dim": 16, "decoder_depth": 1}, "smith": {}}
QUICK = ["trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.limit_val_batches=2", "logger=csv",
         "callbacks.progress_bar=none", "trainer.deterministic=true"]


# Fewer blocks, same architecture: what is tested is that every encoder fits every objective.
SHALLOW = {"vit_tiny": {"depth": 2}, "vit_small": {"depth": 2}, "tnt_tiny": {"depth": 2},
           "t2t_vit_7": {"depth": 2}, "t2t_vit_12": {"depth": 2}, "t2t_vit_14": {"depth": 2},
           "swin_tiny": {"depths": (1, 1, 1, 1)}, "pit_ti": {"depth": (1, 1, 1)}, "convmixer_256_8": {"depth": 2}}


@pytest.fixture(scope="module", params=registry.list_models(task="vision"))
def backbone(request):
    torch.manual_seed(0)
    name = request.param
    return name, registry.create("vision", name, in_chans=1, img_size=28, **SHALLOW.get(name, {}))


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_every_objective_trains_a_step_with_every_vision_backbone(backbone, objective):
    name, net = backbone
    if objective == "cropmae" and not is_vit(net):  # it rebuilds ViT patches; others are refused by name
        with pytest.raises(UserError, match="needs a ViT encoder"):
            ContrastiveTask(copy.deepcopy(net), objective={"name": objective}, modality="vision")
        return
    if objective == "smith_pretrain":  # it reads a hierarchical text encoder's sentence blocks (test_smith.py)
        with pytest.raises(UserError, match="sentence blocks"):
            ContrastiveTask(copy.deepcopy(net), objective={"name": objective}, modality="vision")
        return
    task = ContrastiveTask(copy.deepcopy(net), objective={"name": objective, **SMALL[objective]}, modality="vision")
    task.train()
    # 2 classes x 2 items: the smallest batch with positives and negatives for triplet and pair
    batch = {"views": (torch.randn(4, 1, 28, 28), torch.randn(4, 1, 28, 28)), "y": torch.tensor([0, 0, 1, 1])}
    before = [p.detach().clone() for p in task.encoder.parameters()]
    optimizer = torch.optim.AdamW([p for p in task.parameters() if p.requires_grad], lr=1e-3)
    loss, _ = task.objective.loss(task.encoder, batch)
    assert math.isfinite(loss.item()), (name, objective)
    loss.backward()
    optimizer.step()
    task.objective.after_step(task.encoder)
    moved = sum(not torch.equal(b, p) for b, p in zip(before, task.encoder.parameters()))
    assert moved > 0, f"{objective} did not update the {name} encoder"


def test_a_digits_run_reports_knn_probe_and_spread_and_eval_matches(tmp_path):
    cfg = compose_config("task=contrastive", "objective=simsiam", "run_id=ssl", *QUICK, log_dir=tmp_path)
    result = pipeline.train(cfg)
    metrics = result.test_metrics
    assert {"test/loss", "test/knn_acc", "test/probe_acc", "test/embedding_std"} <= set(metrics)
    assert 0.1 < metrics["test/probe_acc"] <= 1.0  # chance 0.1; the frozen features of a briefly trained ViT
    assert result.monitor_value is not None  # val/knn_acc picked the checkpoint
    again = pipeline.evaluate(compose_config(f"ckpt_path={result.best_ckpt}", config="eval"))
    assert again == metrics  # seeded evaluation views, deterministic probe: the same numbers


def test_an_omniglot_triplet_run_reports_one_shot_accuracy_on_held_out_characters(tmp_path):
    small1 = require_data("omniglot/images_background_small1.zip")
    (tmp_path / "data" / "omniglot").mkdir(parents=True)
    (tmp_path / "data" / "omniglot" / small1.name).symlink_to(small1.absolute())
    fake_omniglot_runs(tmp_path / "data" / "omniglot" / "all_runs.zip", 2, 4, [1, 0, 3, 2])
    cfg = compose_config("task=contrastive", "objective=triplet", "data=omniglot", "task.pk_sampler.classes=8",
                         "task.episodes.episodes=50", "data.official_runs=true", f"paths.data_dir={tmp_path / 'data'}",
                         *QUICK, log_dir=tmp_path)
    result = pipeline.train(cfg)  # the default monitor, val/knn_acc, becomes the one the data can report
    metrics = result.test_metrics
    assert (cfg.task.monitor, cfg.task.mode) == ("val/oneshot_acc", "max") and result.monitor_value is not None
    assert "test/knn_acc" not in metrics  # test characters are not in the training bank
    assert 0.0 <= metrics["test/oneshot_20way_acc"] <= 1.0
    assert metrics["test/official_oneshot_acc"] in {k / 8 for k in range(9)}  # 2 runs x 4 test images


def test_unknown_objective_names_the_close_match():
    with pytest.raises(UserError, match="simsiam"):
        registry.get("simsam", kind="objective", task="contrastive")


class ConstantEncoder(torch.nn.Module):
    """Maps every image to the same features (its one parameter learns, the output never varies)."""

    num_features = 16

    def __init__(self, **_: object) -> None:
        super().__init__()
        self.point = torch.nn.Parameter(torch.randn(16))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.point.expand(images.shape[0], -1) + 0 * images.flatten(1)[:, :1]


def test_collapsed_embeddings_stop_the_run_naming_the_settings(tmp_path, registry_snapshot):
    registry.register("constant_probe", task="vision")(ConstantEncoder)
    cfg = compose_config("task=contrastive", "objective=triplet", "task.pk_sampler.classes=5", *QUICK, log_dir=tmp_path)
    cfg.model.name = "constant_probe"
    from labformer.callbacks.knn_monitor import EmbeddingCollapse

    expected = r"(?s)collapsed at epoch 0.*task.lr \(now 0.001\).*objective=triplet: .*margin=0.2.*allow_collapse=true"
    with pytest.raises(EmbeddingCollapse, match=expected):
        pipeline.train(cfg)
    assert EmbeddingCollapse.exit_code == 3
    cfg = compose_config("task=contrastive", "objective=triplet", "task.pk_sampler.classes=5", *QUICK,
                         "task.allow_collapse=true", "run_id=go-on", log_dir=tmp_path)
    cfg.model.name = "constant_probe"
    assert pipeline.train(cfg).test_metrics["test/embedding_std"] == 0.0  # asked to go on: it does


@pytest.mark.parametrize("objective", ["triplet", "pair"])
def test_the_label_objectives_do_not_collapse_on_a_fresh_omniglot_split(objective, tmp_path):
    # Character split 1: the split on which batch-hard triplet mining collapsed within 2 epochs.
    require_data("omniglot/images_background_small1.zip")
    cfg = compose_config("task=contrastive", f"objective={objective}", "data=omniglot", "data.split_seed=1",
                         "trainer.max_epochs=2", "task.episodes.episodes=50", "logger=none",
                         "callbacks.progress_bar=none", log_dir=tmp_path)
    metrics = pipeline.train(cfg).test_metrics  # a collapse would stop it with EmbeddingCollapse
    assert metrics["test/embedding_std"] > 0.01
