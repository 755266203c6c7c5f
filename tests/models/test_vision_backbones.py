"""Every registered vision backbone, built from its config file, on tiny grayscale and RGB input."""
from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from labformer import CONF_DIR, registry
from labformer.tasks.vision import VisionTask

VISION_MODELS = registry.list_models(task="vision")


def build_from_config(name: str, in_chans: int, img_size: int):
    kwargs = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "model" / f"{name}.yaml"))
    assert kwargs.pop("name") == name
    return registry.create("vision", name, in_chans=in_chans, img_size=img_size, **kwargs)


@pytest.mark.parametrize("name", VISION_MODELS)
@pytest.mark.parametrize("in_chans, img_size", [(1, 28), (3, 32)])
def test_backbone_maps_images_to_features(name, in_chans, img_size):
    torch.manual_seed(0)
    backbone = build_from_config(name, in_chans, img_size)
    features = backbone(torch.randn(2, in_chans, img_size, img_size))
    assert features.shape == (2, backbone.num_features)
    assert torch.isfinite(features).all()


@pytest.mark.parametrize("name", VISION_MODELS)
def test_backbone_trains_a_step_in_the_vision_task(name):
    torch.manual_seed(0)
    task = VisionTask(build_from_config(name, 1, 28), num_classes=10, lr=1e-3)
    images, labels = torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,))
    before = [p.detach().clone() for p in task.parameters()]
    opt = torch.optim.AdamW(task.parameters(), lr=1e-3)
    loss = torch.nn.functional.cross_entropy(task(images), labels)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    changed = sum(not torch.equal(a, b) for a, b in zip(before, task.parameters()))
    assert changed >= 0.9 * len(before), f"only {changed}/{len(before)} parameter tensors moved"
