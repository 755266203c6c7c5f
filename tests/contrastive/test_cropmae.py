"""CropMAE: only masked patches count, the mask ratio holds, one encoder serves both views, it learns,
and a digits run leaves its reconstruction picture in the run directory."""
from __future__ import annotations

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from labformer import pipeline, registry
from labformer.errors import UserError
from labformer.models.contrastive.encoder import Encoder
from labformer.objectives.cropmae import CropMAE, masked_mse, patchify, unpatchify
from labformer.tasks.contrastive import ContrastiveTask

from conftest import compose_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make(img_size: int = 16, **objective) -> tuple[Encoder, CropMAE]:
    torch.manual_seed(0)
    vit = registry.create("vision", "vit_nano", in_chans=1, img_size=img_size, depth=2)
    encoder = Encoder(vit, "vision")
    cropmae = CropMAE(encoder.num_features, decoder_dim=32, decoder_depth=1, **objective)
    cropmae.attach(encoder)
    return encoder, cropmae


def test_patchify_and_unpatchify_are_inverse_and_follow_the_vit_token_order():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float).view(2, 3, 8, 8)
    patches = patchify(images, 4)
    assert patches.shape == (2, 4, 48)
    assert torch.equal(patches[0, 1].view(4, 4, 3).permute(2, 0, 1), images[0, :, :4, 4:])  # row-major: 2nd = top right
    assert torch.equal(unpatchify(patches, 4, 3, (2, 2)), images)


def test_the_loss_counts_only_masked_patches():
    encoder, cropmae = make()
    view1, view2 = torch.randn(3, 1, 16, 16), torch.randn(3, 1, 16, 16)
    torch.manual_seed(5)
    loss, _ = cropmae.loss(encoder, {"views": (view1, view2)})
    torch.manual_seed(5)  # the same mask again
    pred, masked = cropmae.reconstruct(encoder, view1, view2)
    target = cropmae.target(view2)
    assert loss.item() == pytest.approx(masked_mse(pred, target, masked).item(), rel=1e-6)
    visible, hidden = (~masked[0]).nonzero()[0, 0], masked[0].nonzero()[0, 0]
    changed = target.clone()
    changed[0, visible] += 3.0
    assert masked_mse(pred, changed, masked).item() == pytest.approx(loss.item(), rel=1e-6)
    changed = target.clone()
    changed[0, hidden] += 3.0
    assert masked_mse(pred, changed, masked).item() > loss.item() + 1e-3
    # The encoder never sees a masked patch of view 2: its pixels change the target, not the prediction.
    altered = view2.clone()
    row, col = divmod(int(hidden), 4)
    altered[0, :, 4 * row:4 * row + 4, 4 * col:4 * col + 4] += 5.0
    visible_idx = (~masked).nonzero()[:, 1].view(3, -1)
    again, _ = cropmae.reconstruct(encoder, view1, altered, visible=visible_idx)
    assert torch.allclose(again, pred, atol=1e-6)


@pytest.mark.parametrize("img_size, ratio, visible", [(16, 0.985, 1), (32, 0.75, 16), (32, 0.5, 32)])
def test_the_mask_ratio_is_respected(img_size, ratio, visible):
    encoder, cropmae = make(img_size, mask_ratio=ratio)
    lengths = []
    hook = encoder.backbone.blocks.register_forward_hook(lambda m, args, out: lengths.append(args[0].shape[1]))
    pred, masked = cropmae.reconstruct(encoder, torch.randn(4, 1, img_size, img_size),
                                       torch.randn(4, 1, img_size, img_size))
    hook.remove()
    n = (img_size // 4) ** 2
    assert pred.shape == (4, n, 16)
    assert masked.sum(1).tolist() == [n - visible] * 4
    prefix = encoder.backbone.num_prefix_tokens
    assert lengths == [prefix + n, prefix + visible]  # view 1 whole, view 2 only its visible patches
    assert len({tuple(row.tolist()) for row in masked}) > 1  # a fresh mask per item


def test_one_encoder_serves_both_views():
    encoder, cropmae = make()
    assert not any(isinstance(m, VisionTransformer) for m in cropmae.modules())  # no second encoder
    assert not {id(p) for p in cropmae.parameters()} & {id(p) for p in encoder.parameters()}
    calls = []
    hook = encoder.backbone.blocks.register_forward_hook(lambda m, args, out: calls.append(m))
    view1 = torch.randn(2, 1, 16, 16, requires_grad=True)
    loss, _ = cropmae.loss(encoder, {"views": (view1, torch.randn(2, 1, 16, 16))})
    hook.remove()
    assert len(calls) == 2 and calls[0] is calls[1]
    loss.backward()
    assert view1.grad.abs().sum() > 0  # the reconstruction of view 2 depends on view 1
    assert encoder.backbone.patch_embed.proj.weight.grad.abs().sum() > 0


def test_a_non_vit_encoder_is_refused_naming_the_vits():
    pvt = registry.create("vision", "pvt_v2_b0", in_chans=1, img_size=16)
    with pytest.raises(UserError, match="vit_nano"):
        ContrastiveTask(pvt, objective={"name": "cropmae"}, modality="vision")


def test_the_loss_decreases_on_a_fixed_digits_batch():
    from labformer.data.contrastive.datamodule import ContrastiveDataModule

    datamodule = ContrastiveDataModule(registry.create("vision", "digits", kind="dataset"), "vision")
    torch.manual_seed(0)
    batch = next(iter(datamodule.train_dataloader()))
    vit = registry.create("vision", "vit_nano", in_chans=1, img_size=16)
    task = ContrastiveTask(vit, objective={"name": "cropmae"}, modality="vision")
    optimizer = torch.optim.AdamW(task.parameters(), lr=1e-3)
    losses = []
    for _ in range(25):
        torch.manual_seed(1)  # the same masks every step: the batch can be fitted
        loss, _ = task.objective.loss(task.encoder, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_a_digits_run_writes_the_reconstruction_picture(tmp_path):
    cfg = compose_config("task=contrastive", "objective=cropmae", "run_id=cropmae", "trainer.max_epochs=1",
                         "trainer.limit_train_batches=3", "trainer.limit_val_batches=2", "logger=csv",
                         log_dir=tmp_path)
    result = pipeline.train(cfg)
    picture = result.run_dir / "reconstruction_val.png"
    assert picture.is_file() and picture.read_bytes()[:4] == b"\x89PNG"
    from PIL import Image

    width, height = Image.open(picture).size
    assert height > width  # 8 items down, 3 columns across
    assert {"test/loss", "test/knn_acc"} <= set(result.test_metrics)
