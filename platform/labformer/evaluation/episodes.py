"""Episodic N-way K-shot evaluation (as in one-shot Omniglot): draw episodes once, score any features.

An episode picks `n_way` classes and, per class, `k_shot` support and `n_query` query
samples (disjoint). Each query is assigned the support class it scores highest against:
by default cosine similarity to the class's mean support feature (a prototype; with one
shot, nearest neighbour), or any pair scorer `score(query[Q,D], support[S,D]) -> [Q,S]`
(e.g. a siamese head), averaged over each class's support samples.

    episodes = sample_episodes(dm.test_set.labels, 20, 1, groups=dm.test_set.alphabets, episodes=400)
    accuracy = episode_accuracy(features, dm.test_set.labels, episodes)
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F

Score = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Episode(NamedTuple):
    """Indices into the evaluated set, class-major (all of class a, then all of class b, ...)."""

    support_idx: np.ndarray  # [n_way * k_shot]
    support_labels: np.ndarray
    query_idx: np.ndarray  # [n_way * n_query]
    query_labels: np.ndarray


def _numpy(values) -> np.ndarray:
    return values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)


def sample_episodes(labels, n_way: int, k_shot: int, n_query: int = 1, episodes: int = 1000, seed: int = 0,
                    groups=None) -> list[Episode]:
    """`episodes` episodes over the samples `labels` [N] (numpy or torch), the same for a seed.

    Only classes with at least k_shot + n_query samples take part. With `groups` [N] (e.g.
    each image's alphabet; a class must lie in one group), every episode draws its classes
    from one group, chosen uniformly among the groups that have at least n_way classes, as
    Lake's one-shot runs stay within an alphabet; if no group has that many, classes are
    drawn from all groups. np.random.RandomState: its stream is frozen across NumPy versions.
    """
    for key, value, least in (("n_way", n_way, 1), ("k_shot", k_shot, 1), ("n_query", n_query, 1),
                              ("episodes", episodes, 1)):
        if int(value) < least:
            raise ValueError(f"{key}={value} must be >= {least}")
    labels = _numpy(labels)
    classes, inverse = np.unique(labels, return_inverse=True)
    members = [np.flatnonzero(inverse == c) for c in range(len(classes))]
    eligible = np.asarray([c for c, m in enumerate(members) if len(m) >= k_shot + n_query], dtype=np.int64)
    if len(eligible) < n_way:
        raise ValueError(f"{n_way}-way episodes need {n_way} classes with >= {k_shot + n_query} samples "
                         f"(k_shot + n_query); only {len(eligible)} have that many.")
    pools = [eligible]
    if groups is not None:
        groups = _numpy(groups)
        if len(groups) != len(labels):
            raise ValueError(f"groups has {len(groups)} entries for {len(labels)} labels")
        by_group: dict = {}
        for c in eligible:
            found = np.unique(groups[members[c]])
            if len(found) != 1:
                raise ValueError(f"class {classes[c]} spans groups {found.tolist()}; each class must lie in one group")
            by_group.setdefault(found[0].item(), []).append(c)
        large = [np.asarray(cs, dtype=np.int64) for _, cs in sorted(by_group.items()) if len(cs) >= n_way]
        pools = large or pools

    rng = np.random.RandomState(seed)
    out = []
    for _ in range(episodes):
        pool = pools[rng.randint(len(pools))]
        support, query = [], []
        for c in rng.choice(pool, n_way, replace=False):
            picked = rng.choice(members[c], k_shot + n_query, replace=False)
            support.append(picked[:k_shot])
            query.append(picked[k_shot:])
        s, q = np.concatenate(support), np.concatenate(query)
        out.append(Episode(s, labels[s], q, labels[q]))
    return out


@torch.no_grad()
def episode_accuracy(features, labels, episodes: Sequence[Episode | tuple], score: Score | None = None,
                     chunk: int = 256) -> float:
    """Mean accuracy over every query of every episode (features [N,D], labels [N] of the same set).

    Truth comes from `labels`, so episodes drawn once can score features of many models.
    Without `score`, episodes of one shape are scored `chunk` at a time in batched ops:
    thousands of tiny per-episode ops are dominated by dispatch and thread overhead.
    """
    feats = torch.as_tensor(features)
    feats = feats if feats.is_floating_point() else feats.float()
    labels = torch.as_tensor(_numpy(labels), device=feats.device)
    by_shape: dict[tuple[int, int], list[tuple[np.ndarray, np.ndarray]]] = {}
    for support_idx, _, query_idx, _ in episodes:
        s, q = np.asarray(support_idx, dtype=np.int64), np.asarray(query_idx, dtype=np.int64)
        by_shape.setdefault((len(s), len(q)), []).append((s, q))
    correct = total = 0
    for (n_support, n_query), group in by_shape.items():
        step = chunk if score is None else 1  # a pair scorer sees one episode: [Q,D] x [S,D]
        for start in range(0, len(group), step):
            part = group[start:start + step]
            s = torch.as_tensor(np.stack([p[0] for p in part]), device=feats.device)  # [E,S]
            q = torch.as_tensor(np.stack([p[1] for p in part]), device=feats.device)  # [E,Q]
            s_labels, q_labels = labels[s], labels[q]
            # same[e,i,j]: support samples i and j are of one class; averaging over it gives every
            # support position its class's value, so argmax over positions picks a class.
            same = (s_labels[:, :, None] == s_labels[:, None, :]).to(feats.dtype)
            same = same / same.sum(dim=2, keepdim=True)
            if score is None:
                prototypes = same @ feats[s]  # [E,S,D]
                scores = F.normalize(feats[q], dim=2) @ F.normalize(prototypes, dim=2).transpose(1, 2)
            else:
                pair = torch.as_tensor(score(feats[q[0]], feats[s[0]])).to(feats.dtype)
                if pair.shape != (n_query, n_support):
                    raise ValueError(f"score returned shape {tuple(pair.shape)}; expected [queries, support] "
                                     f"= {[n_query, n_support]}")
                scores = pair[None] @ same.transpose(1, 2)  # [1,Q,S]: mean score of each position's class
            predicted = s_labels.gather(1, scores.argmax(dim=2))
            correct += (predicted == q_labels).sum().item()
            total += q_labels.numel()
    if total == 0:
        raise ValueError("no queries: pass at least one episode with queries")
    return correct / total


@torch.no_grad()
def fixed_runs_accuracy(encode: Callable[[torch.Tensor], torch.Tensor], runs, score: Score | None = None) -> float:
    """Mean accuracy over fixed one-shot runs (e.g. Lake et al.'s 20): each run is (support inputs [K,...],
    query inputs [Q,...], answers [Q] = the support index of each query's class); `encode` maps inputs
    to features. Every support sample is its own class, so the runs score like one-shot episodes."""
    correct = total = 0
    for support, queries, answers in runs:
        k, q = len(support), len(queries)
        feats = encode(torch.cat([support, queries]))
        labels = torch.cat([torch.arange(k), torch.as_tensor(answers)])
        run = Episode(np.arange(k), np.arange(k), np.arange(k, k + q), labels[k:].numpy())
        correct += episode_accuracy(feats, labels, [run], score=score) * q
        total += q
    if total == 0:
        raise ValueError("no runs: pass at least one (support, queries, answers)")
    return correct / total
