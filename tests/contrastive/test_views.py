"""Image views against their definitions, the P x K sampler, and the embedding evaluations."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from labformer.data.contrastive.datamodule import PKBatchSampler
from labformer.data.contrastive.views.image import ImageViewDataset, ImageViews, gaussian_blur
from labformer.errors import UserError
from labformer.evaluation import embedding as embedding_eval

PLAIN = dict(mean=(0.0,), std=(1.0,), scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=False, jitter=0.0, blur_p=0.0)


def images(b=4, c=1, s=8):
    torch.manual_seed(0)
    return torch.randint(0, 256, (b, c, s, s), dtype=torch.uint8)


def test_full_crop_without_flip_jitter_or_blur_is_the_identity():
    x = images()
    assert torch.allclose(ImageViews(**PLAIN)(x), x.float() / 255, atol=1e-5)


def test_flip_mirrors_some_images_and_leaves_the_others():
    x = images(b=64)
    out = ImageViews(**{**PLAIN, "hflip": True})(x)
    ref = x.float() / 255
    mirrored = [bool(torch.allclose(o, r.flip(-1), atol=1e-5)) for o, r in zip(out, ref)]
    plain = [bool(torch.allclose(o, r, atol=1e-5)) for o, r in zip(out, ref)]
    assert all(m or p for m, p in zip(mirrored, plain)) and 16 < sum(mirrored) < 48


def test_crop_area_follows_the_scale():
    # a white square on black: a crop of a quarter of the area shows the square at twice the size
    x = torch.zeros(32, 1, 16, 16, dtype=torch.uint8)
    x[:, :, 4:12, 4:12] = 255
    small = ImageViews(**{**PLAIN, "scale": (0.25, 0.25)})(x)
    assert small.shape == x.shape
    # a crop of area 1/4 magnifies 2x, so the bright share of each view is between 0 and 1, mean higher than 1/4
    assert small.mean() > (x.float() / 255).mean() + 0.05


def test_blur_keeps_a_constant_image_and_smooths_an_edge():
    flat = torch.full((2, 1, 10, 10), 0.5)
    assert torch.allclose(gaussian_blur(flat, torch.tensor([0.5, 2.0])), flat, atol=1e-6)
    edge = torch.zeros(1, 1, 10, 10)
    edge[..., 5:] = 1
    out = gaussian_blur(edge, torch.tensor([1.5]))
    assert 0 < out[0, 0, 5, 4] < 0.5 < out[0, 0, 5, 5] < 1


def test_jitter_scales_brightness_within_its_range():
    x = torch.full((256, 1, 4, 4), 128, dtype=torch.uint8)
    out = ImageViews(**{**PLAIN, "jitter": 0.4, "jitter_p": 1.0})(x)
    ratio = out.mean((1, 2, 3)) / (128 / 255)  # contrast leaves a constant image's mean alone
    assert ratio.min() >= 0.6 - 1e-5 and ratio.max() <= 1.4 + 1e-5 and ratio.std() > 0.15


def test_evaluation_views_repeat_exactly_and_training_views_do_not():
    x, y = images(b=10), torch.arange(10)
    views = ImageViews(mean=(0.5,), std=(0.25,))
    seeded = ImageViewDataset(x, y, views, clean=True, seed=3)
    a, b = seeded.__getitems__(list(range(5))), seeded.__getitems__(list(range(5)))
    assert all(torch.equal(u, v) for u, v in zip(a["views"], b["views"])) and torch.equal(a["x"], b["x"])
    assert not torch.equal(a["views"][0], a["views"][1])  # two different views of the same items
    free = ImageViewDataset(x, y, views, clean=False)
    assert not torch.equal(free.__getitems__([0, 1])["views"][0], free.__getitems__([0, 1])["views"][0])
    assert torch.allclose(a["x"], (x[:5].float() / 255 - 0.5) / 0.25)


def test_pk_sampler_draws_p_classes_times_k_items():
    labels = np.repeat(np.arange(10), 7)
    sampler = PKBatchSampler(labels, classes=4, per_class=3, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 70 // 12
    for batch in batches:
        classes, counts = np.unique(labels[batch], return_counts=True)
        assert len(classes) == 4 and (counts == 3).all()
    assert batches != list(sampler)  # a new order each epoch
    with pytest.raises(UserError, match="only 10 labelled classes"):
        PKBatchSampler(labels, classes=11, per_class=2)


def test_knn_and_probe_are_perfect_on_separated_clusters_and_chance_on_noise():
    torch.manual_seed(0)
    centres = torch.randn(5, 16) * 5
    y = torch.arange(200) % 5
    x = centres[y] + 0.1 * torch.randn(200, 16)
    assert embedding_eval.knn_accuracy(x[:150], y[:150], x[150:], y[150:], k=5) == 1.0
    assert embedding_eval.linear_probe(x[:150], y[:150], x[150:], y[150:]) == 1.0
    noise = torch.randn(2000, 16)
    yn = torch.randint(0, 5, (2000,))
    assert embedding_eval.knn_accuracy(noise[:1500], yn[:1500], noise[1500:], yn[1500:]) < 0.3


def test_a_constant_encoder_is_detected_as_collapsed():
    assert embedding_eval.collapsed(torch.ones(50, 32) * 3.0)
    assert embedding_eval.embedding_std(torch.ones(50, 32)) == 0.0
    spread = torch.randn(500, 32)
    assert not embedding_eval.collapsed(spread)
    assert embedding_eval.embedding_std(spread) == pytest.approx(1 / 32 ** 0.5, rel=0.1)
