"""SMITH's objectives (Yang et al., CIKM 2020): siamese document matching and hierarchical pretraining.

One class, three weighted terms; `objective=smith` is the matcher (fine-tuning), `objective=smith_pretrain`
the two pretraining terms, and both weights > 0 with the matcher's is the reference code's joint mode.

- match (any encoder): every pair of distinct documents of a batch (the P x K sampler's sections, both
  views) gets the logit s = a * cos(d_1, d_2), a = `amplifier` (the reference's 6), and sigmoid
  cross-entropy against same section (1) / other section (0). Positives are weighted up to the
  negatives' total (the reference's neg_to_pos_example_ratio), so both kinds count equally. The two
  views of one document are never paired: they would be a trivial positive.
- word (model=smith): `word_mask` of the tokens inside blocks (not the sentence ends) are replaced by
  `mask_token` (null: a random id) and predicted from the word-level states through a transform
  (Linear, GELU, LayerNorm), the tied token embedding and a bias.
- block, the masked sentence block LM (model=smith): in every document `masked_blocks` block vectors
  are replaced by a learned mask vector before the document level; its output p_i at a masked place,
  through a transform (Linear, GELU, LayerNorm), scores each masked block e_j of the batch (their
  unmasked vectors are the candidates):  L = -1/M sum_i log softmax_j(p_i . e_j)[i]
  (the reference adds a per-candidate bias; left out here, it only learns the slots' order).

With a pretraining term the document vectors of the masked documents also feed the match term (one
forward, as in the reference's joint mode). The sentence blocks come from the clean documents, so
masking a token never moves a block boundary.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from labformer.errors import UserError
from labformer.objectives.base import Objective
from labformer.registry import register

PAPER = "Yang et al., CIKM 2020, Beyond 512 Tokens: Siamese Multi-depth Transformer-based Hierarchical Encoder"


def masked_block_loss(predicted: torch.Tensor, candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy, top-1 accuracy) of picking candidate i for prediction i among all M: [M, D] each."""
    logits = predicted @ candidates.T
    target = torch.arange(len(logits), device=logits.device)
    return F.cross_entropy(logits, target), (logits.argmax(1) == target).float().mean()


def pair_loss(feats: torch.Tensor, labels: torch.Tensor, item: torch.Tensor, amplifier: float
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(class-balanced sigmoid cross-entropy, balanced accuracy) over the pairs of distinct items of `feats`
    [N, D] (logit = amplifier * cosine; target: same label); rows of one `item` are not paired."""
    z = F.normalize(feats.float(), dim=-1)
    i, j = torch.triu_indices(len(z), len(z), 1, device=z.device)
    keep = (item[i] != item[j]) & (labels[i] >= 0) & (labels[j] >= 0)
    i, j = i[keep], j[keep]
    if len(i) == 0:
        return feats.sum() * 0.0, feats.new_zeros(())
    logit = amplifier * (z[i] * z[j]).sum(-1)
    target = (labels[i] == labels[j]).float()
    per_pair = F.binary_cross_entropy_with_logits(logit, target, reduction="none")
    right = ((logit > 0).float() == target).float()
    kinds = [target.bool(), ~target.bool()]
    loss = torch.stack([per_pair[k].mean() for k in kinds if k.any()]).mean()
    acc = torch.stack([right[k].mean() for k in kinds if k.any()]).mean()
    return loss, acc


def _head(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim))


@register("smith_pretrain", task="contrastive", kind="objective", needs_labels=False, paper=PAPER,
          args=dict(match_weight=0.0, word_weight=1.0, block_weight=1.0))
@register("smith", task="contrastive", kind="objective", needs_labels=True, paper=PAPER)
class Smith(Objective):
    def __init__(self, feature_dim: int, match_weight: float = 1.0, word_weight: float = 0.0,
                 block_weight: float = 0.0, amplifier: float = 6.0, word_mask: float = 0.15,
                 mask_token: int | None = None, masked_blocks: int = 2) -> None:
        """match_weight / word_weight / block_weight: the terms' weights (module docstring); amplifier: a in
        s = a cos; word_mask: share of block tokens masked; mask_token: their replacement id (long_doc_pairs:
        2; null: a random id); masked_blocks: block vectors masked per document (at most all)."""
        super().__init__(feature_dim)
        if min(match_weight, word_weight, block_weight) < 0 or not match_weight + word_weight + block_weight > 0:
            raise UserError("objective.match_weight, word_weight and block_weight must be >= 0, one of them > 0")
        if not 0 < word_mask < 1 or masked_blocks < 1 or amplifier <= 0:
            raise UserError("objective.word_mask must be in (0, 1), masked_blocks >= 1 and amplifier > 0")
        self.match_weight, self.word_weight, self.block_weight = match_weight, word_weight, block_weight
        self.amplifier, self.word_mask, self.mask_token = amplifier, word_mask, mask_token
        self.masked_blocks = masked_blocks
        self.needs_labels = match_weight > 0

    def attach(self, encoder: nn.Module) -> None:
        if not (self.word_weight or self.block_weight):
            return
        backbone = getattr(encoder, "backbone", None)
        if not all(hasattr(backbone, k) for k in ("split", "encode_blocks", "document")):
            raise UserError("the SMITH pretraining terms (objective=smith_pretrain, or word_weight / block_weight "
                            "> 0) read the sentence blocks of a hierarchical encoder: use model=smith with text data "
                            "(e.g. data=long_doc_pairs), or objective=smith (matching only) with other encoders")
        dim, vocab = backbone.num_features, backbone.vocab_size
        if self.mask_token is not None and not 0 <= self.mask_token < vocab:
            raise UserError(f"objective.mask_token={self.mask_token} is not a token id (0..{vocab - 1})")
        if self.word_weight:
            self.word_transform, self.word_bias = _head(dim), nn.Parameter(torch.zeros(vocab))
        if self.block_weight:
            self.block_transform = _head(dim)
            self.block_mask = nn.Parameter(torch.randn(dim) * 0.02)

    def score(self, query: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
        """The match logits a * cos [Q, S] (episodes and the pair metrics threshold them at 0)."""
        return self.amplifier * F.normalize(query.float(), dim=-1) @ F.normalize(support.float(), dim=-1).T

    def loss(self, encoder, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        docs = torch.cat(batch["views"])
        labels, item = batch["y"].repeat(2), torch.arange(len(batch["y"]), device=docs.device).repeat(2)
        total, extra = docs.new_zeros((), dtype=torch.float), {}
        feats = None
        if self.word_weight or self.block_weight:
            feats, terms = self.pretraining(encoder.backbone, docs)
            total = total + 0.0 * feats.sum()  # a graph even when a batch has nothing to mask
            for name, (value, acc) in terms.items():
                total = total + getattr(self, f"{name}_weight") * value
                extra[f"{name}_loss"], extra[f"{name}_acc"] = value.detach(), acc
        if self.match_weight:
            value, acc = pair_loss(encoder(docs) if feats is None else feats, labels, item, self.amplifier)
            total = total + self.match_weight * value
            extra["pair_loss"], extra["pair_acc"] = value.detach(), acc  # in-batch pairs
        return total, extra

    # -- pretraining -------------------------------------------------------------------------
    def _generator(self, docs: torch.Tensor) -> torch.Generator | None:
        # Evaluation masks repeat (seeded by the batch's content); training draws from the global stream.
        return None if self.training else torch.Generator().manual_seed(int(docs.sum()) % (2 ** 31))

    def mask_words(self, backbone, docs: torch.Tensor, spans, gen) -> tuple[torch.Tensor, torch.Tensor]:
        """(documents with `word_mask` of their block tokens replaced, bool [B,T] of the replaced places)."""
        inside = torch.zeros(docs.shape, dtype=torch.bool)
        for r, doc in enumerate(spans):
            for s, e in doc:
                inside[r, s:e] = True
        inside = inside.to(docs.device)
        if backbone.sep_token is not None:
            inside &= docs != backbone.sep_token
        chosen = (torch.rand(docs.shape, generator=gen) < self.word_mask).to(docs.device) & inside
        if self.mask_token is None:
            new = torch.randint(0, backbone.vocab_size, docs.shape, generator=gen).to(docs.device)
        else:
            new = torch.full_like(docs, self.mask_token)
        return torch.where(chosen, new, docs), chosen

    def pretraining(self, backbone, docs: torch.Tensor):
        """(document vectors of the masked documents, {"word"/"block": (loss, accuracy)})."""
        gen = self._generator(docs)
        spans = [doc[: backbone.max_blocks] for doc in backbone.split(docs)]
        inputs, chosen = self.mask_words(backbone, docs, spans, gen) if self.word_weight else (docs, None)
        hidden, vectors = backbone.encode_blocks(inputs, spans, token_states=bool(self.word_weight))
        terms: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        masked, doc_inputs = [], vectors
        if self.block_weight:
            masked = [torch.randperm(len(v), generator=gen)[: self.masked_blocks].to(docs.device) for v in vectors]
            doc_inputs = [v.index_put((m,), self.block_mask.to(v.dtype).expand(len(m), -1))
                          for v, m in zip(vectors, masked)]
        feats, states = backbone.document(doc_inputs)
        if self.block_weight:
            predicted = self.block_transform(torch.cat([s[m] for s, m in zip(states, masked)]))
            candidates = torch.cat([v[m] for v, m in zip(vectors, masked)])
            if len(candidates) >= 2:  # one candidate: nothing to choose from
                terms["block"] = masked_block_loss(predicted.float(), candidates.float())
        if self.word_weight and chosen.any():
            logits = self.word_transform(hidden[chosen]) @ backbone.token_embedding.weight.T + self.word_bias
            target = docs[chosen]
            terms["word"] = (F.cross_entropy(logits.float(), target), (logits.argmax(1) == target).float().mean())
        return feats, terms
