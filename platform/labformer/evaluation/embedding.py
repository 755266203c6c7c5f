"""How good are frozen embeddings: kNN accuracy, a linear probe, and the collapse signal."""
from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def knn_accuracy(bank: torch.Tensor, bank_labels: torch.Tensor, query: torch.Tensor, query_labels: torch.Tensor,
                 k: int = 5, chunk: int = 1024) -> float:
    """Top-1 accuracy of a majority vote among the k nearest (cosine) bank items; ties go to
    the class whose members are nearer (votes weighted by 1 + similarity / 1e3)."""
    bank, query = F.normalize(bank.float(), dim=-1), F.normalize(query.float(), dim=-1)
    classes = int(max(bank_labels.max(), query_labels.max())) + 1
    k = min(k, len(bank))
    correct = 0
    for start in range(0, len(query), chunk):
        sim = query[start:start + chunk] @ bank.T
        top_sim, top = sim.topk(k, dim=1)
        votes = torch.zeros(len(top), classes).scatter_add_(1, bank_labels[top], 1 + top_sim / 1e3)
        correct += int((votes.argmax(1) == query_labels[start:start + chunk]).sum())
    return correct / max(1, len(query))


def linear_probe(train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor, test_labels: torch.Tensor,
                 steps: int = 100, weight_decay: float = 1e-4) -> float:
    """Test accuracy of a multinomial logistic regression fitted (full batch, L-BFGS) on the
    standardised frozen features: the usual linear evaluation, deterministic on CPU."""
    classes = int(max(train_labels.max(), test_labels.max())) + 1
    # Lightning tests under inference mode: leave it, and copy its tensors into normal ones.
    with torch.inference_mode(False), torch.enable_grad():
        train, test, train_labels = train.clone(), test.clone(), train_labels.clone()
        mean, std = train.mean(0), train.std(0).clamp(min=1e-6)
        x, xt = ((train - mean) / std).float(), ((test - mean) / std).float()
        layer = torch.nn.Linear(x.shape[1], classes)
        torch.nn.init.zeros_(layer.weight), torch.nn.init.zeros_(layer.bias)
        opt = torch.optim.LBFGS(layer.parameters(), max_iter=steps, history_size=20, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = F.cross_entropy(layer(x), train_labels) + weight_decay * layer.weight.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            return float((layer(xt).argmax(1) == test_labels.clone()).float().mean())


def embedding_std(features: torch.Tensor) -> float:
    """Mean per-dimension std of the l2-normalised features (SimSiam, Sec. 4.1): about
    1/sqrt(D) for well-spread embeddings, 0 when every input maps to one point."""
    return float(F.normalize(features.float(), dim=-1).std(0).mean())


def collapsed(features: torch.Tensor, fraction: float = 0.01) -> bool:
    """True when the spread is below `fraction` of the 1/sqrt(D) of well-spread embeddings.
    (An untrained ViT's features already share one dominant direction, ~0.03 of 1/sqrt(D)
    on digits, so the threshold sits well below that; a constant encoder gives 0.)"""
    return embedding_std(features) < fraction / features.shape[1] ** 0.5
