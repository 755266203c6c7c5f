"""Episodic N-way K-shot evaluation (evaluation/episodes.py) on synthetic features."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from labformer.evaluation.episodes import episode_accuracy, sample_episodes


def _one_hot_features(classes: int = 20, per_class: int = 6, noise: float = 0.1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(per_class)
    return F.one_hot(labels, classes).float() + noise * torch.randn(len(labels), classes, generator=g), labels


def test_episodes_are_well_formed():
    _, labels = _one_hot_features()
    episodes = sample_episodes(labels, n_way=5, k_shot=2, n_query=3, episodes=50, seed=3)
    assert len(episodes) == 50
    for support, s_labels, query, q_labels in episodes:
        assert support.shape == (10,) and query.shape == (15,)
        assert not set(support.tolist()) & set(query.tolist())  # disjoint samples
        assert len(set(s_labels.tolist())) == 5 and set(q_labels.tolist()) == set(s_labels.tolist())
        assert np.array_equal(labels.numpy()[support], s_labels) and np.array_equal(labels.numpy()[query], q_labels)
        assert np.array_equal(np.bincount(s_labels)[np.unique(s_labels)], [2] * 5)


def test_episodes_are_deterministic_for_a_seed():
    _, labels = _one_hot_features()
    a = sample_episodes(labels.numpy(), 5, 1, episodes=20, seed=7)
    b = sample_episodes(labels, 5, 1, episodes=20, seed=7)
    c = sample_episodes(labels, 5, 1, episodes=20, seed=8)
    assert all(np.array_equal(x, y) for ea, eb in zip(a, b) for x, y in zip(ea, eb))
    assert not all(np.array_equal(ea.support_idx, ec.support_idx) for ea, ec in zip(a, c))


def test_group_restricted_episodes_stay_in_one_group():
    labels = np.repeat(np.arange(30), 3)
    groups = np.where(labels < 10, 0, np.where(labels < 27, 1, 2))  # 10, 17 and 3 classes
    episodes = sample_episodes(labels, 5, 1, n_query=2, episodes=200, groups=groups)
    used = set()
    for support, _, query, _ in episodes:
        assert len(set(groups[support].tolist()) | set(groups[query].tolist())) == 1
        used.add(groups[support][0].item())
    assert used == {0, 1}  # group 2 is too small for 5-way
    wide = sample_episodes(labels, 18, 1, episodes=50, groups=groups)  # no group has 18: all classes
    assert any(len(set(groups[e.support_idx].tolist())) > 1 for e in wide)
    with pytest.raises(ValueError, match="spans groups"):
        sample_episodes(labels, 5, 1, groups=np.arange(len(labels)) % 2)


def test_episodes_skip_small_classes_and_refuse_too_few():
    labels = np.array([0, 0, 1, 1, 2, 2, 3])  # class 3 has one sample
    for e in sample_episodes(labels, 3, 1, episodes=30):
        assert 3 not in e.support_labels
    with pytest.raises(ValueError, match="only 3"):
        sample_episodes(labels, 4, 1)


def test_accuracy_is_one_on_separable_features():
    features, labels = _one_hot_features()
    episodes = sample_episodes(labels, 5, 1, episodes=200)
    assert episode_accuracy(features, labels, episodes) == 1.0
    assert episode_accuracy(features, labels, sample_episodes(labels, 20, 3, n_query=3, episodes=20)) == 1.0


def test_accuracy_is_chance_on_random_features():
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(50).repeat_interleave(4)
    features = torch.randn(len(labels), 16, generator=g)
    episodes = sample_episodes(labels, 5, 1, n_query=1, episodes=2000, seed=2)
    assert abs(episode_accuracy(features, labels, episodes) - 0.2) < 0.03  # 10000 queries: sd 0.004


def test_custom_score_plugs_in():
    features, labels = _one_hot_features()
    episodes = sample_episodes(labels, 5, 2, n_query=1, episodes=50)
    cosine = lambda q, s: F.normalize(q, dim=1) @ F.normalize(s, dim=1).T
    assert episode_accuracy(features, labels, episodes, score=lambda q, s: -cosine(q, s)) == 0.0
    assert episode_accuracy(features, labels, episodes, score=cosine) == 1.0
    # One shot: averaging cosine scores over one sample is the default nearest neighbour.
    g = torch.Generator().manual_seed(4)
    noisy = torch.randn(len(labels), 20, generator=g)
    one_shot = sample_episodes(labels, 5, 1, episodes=100)
    assert episode_accuracy(noisy, labels, one_shot, score=cosine) == episode_accuracy(noisy, labels, one_shot)
    with pytest.raises(ValueError, match="expected"):
        episode_accuracy(features, labels, episodes, score=lambda q, s: cosine(q, s).T)
