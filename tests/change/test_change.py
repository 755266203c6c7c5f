"""Change detection: full-resolution 2-class output, date-swap symmetry of |difference|, F1/IoU by hand,
generated masks that are exactly the changed pixels, and a short run that learns."""
from __future__ import annotations

import lightning as L
import pytest
import torch

from labformer import pipeline, registry
from labformer.builders import build_datamodule, build_task
from labformer.data.change.pairs import generate
from labformer.errors import UserError
from labformer.tasks.change import ChangeTask

from conftest import compose_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def task(model: str = "pvt_v2_b0", img_size: int = 32, **kwargs) -> ChangeTask:
    torch.manual_seed(0)
    backbone = registry.create("vision", model, in_chans=3, img_size=img_size)
    return ChangeTask(backbone, in_chans=3, img_size=img_size, decoder_dim=16, **kwargs)


@pytest.mark.parametrize("model, img_size", [("pvt_v2_b0", 32), ("pvt_v2_b0", 48), ("vit_nano", 32)])
def test_the_decoder_output_is_full_resolution_with_two_channels(model, img_size):
    logits = task(model, img_size)(torch.randn(2, 3, img_size, img_size), torch.randn(2, 3, img_size, img_size))
    assert logits.shape == (2, 2, img_size, img_size)


def test_swapping_the_dates_gives_the_same_prediction_with_the_absolute_difference():
    before, after = torch.randn(3, 3, 32, 32), torch.randn(3, 3, 32, 32)
    symmetric = task().eval()
    assert torch.allclose(symmetric(before, after), symmetric(after, before), atol=1e-5)
    ordered = task(difference="concat").eval()  # the paper's module sees which date is which
    assert not torch.allclose(ordered(before, after), ordered(after, before), atol=1e-3)


def test_f1_and_iou_of_the_change_class_match_a_hand_count():
    mask = torch.tensor([[[1, 1, 0], [0, 1, 0], [0, 0, 0]]])
    predicted = torch.tensor([[[1, 0, 0], [1, 1, 0], [0, 0, 1]]])
    logits = torch.stack([1 - predicted, predicted], 1).float()  # argmax gives `predicted`
    metrics = task().metrics["val_metrics"]
    metrics.update(logits.argmax(1), mask)
    got = {k: v.item() for k, v in metrics.compute().items()}
    tp, fp, fn = 2, 2, 1  # (0,0), (1,1) found; (1,0), (2,2) false alarms; (0,1) missed
    assert got["val/f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))  # 4/7, not the two-class mean
    assert got["val/iou"] == pytest.approx(tp / (tp + fp + fn))  # 2/5


def test_generated_masks_are_exactly_the_pixels_that_differ_and_the_splits_are_fixed():
    before, after, masks = generate(300, 32, seed=0, split="train")
    assert before.dtype == torch.uint8 and masks.shape == (300, 32, 32)
    assert torch.equal(masks, (before != after).any(1))
    changed = masks.flatten(1).float().mean(1)
    assert (changed > 0).all() and changed.mean() < 0.5  # every pair changes somewhere, never everywhere
    assert torch.equal(generate(3, 32, seed=0, split="train")[0], before[:3])  # deterministic
    assert not torch.equal(generate(3, 32, seed=0, split="val")[0], before[:3])  # its own stream per split
    assert not torch.equal(generate(3, 32, seed=1, split="train")[0], before[:3])


def test_augmented_training_batches_keep_the_mask_on_the_changed_pixels():
    datamodule = registry.create("change", "change_pairs", kind="dataset", train_size=64, val_size=8, test_size=8)
    torch.manual_seed(0)
    batch = next(iter(datamodule.train_dataloader()))
    assert torch.equal(batch["mask"].bool(), (batch["before"] != batch["after"]).any(1))
    assert batch["mask"].dtype == torch.long and batch["mask"].any()  # cross-entropy's class indices


def test_an_encoder_without_feature_maps_is_refused_naming_one_that_has_them():
    backbone = registry.create("vision", "crate", in_chans=3, img_size=32)
    with pytest.raises(UserError, match="pvt_v2_b0"):
        ChangeTask(backbone, in_chans=3, img_size=32)


def test_a_short_run_improves_f1_over_the_untrained_model(tmp_path):
    cfg = compose_config("task=change", "data.train_size=256", "data.val_size=64", "data.test_size=64",
                         "trainer.max_epochs=3", "run_id=change", log_dir=tmp_path)
    L.seed_everything(cfg.seed, verbose=False)
    datamodule = build_datamodule(cfg)
    untrained = build_task(cfg, datamodule, {})
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    start = trainer.validate(untrained, datamodule=datamodule, verbose=False)[0]["val/f1"]
    result = pipeline.train(cfg)
    assert result.monitor_value > start + 0.3, (start, result.monitor_value)
    assert result.test_metrics["test/f1"] > start + 0.3 and result.test_metrics["test/iou"] > 0.2
