"""SMITH, the Siamese Multi-depth Transformer-based Hierarchical encoder (Yang et al., CIKM 2020).

A document (a token stream whose sentences end with `sep_token`, padded at the end with
`pad_token`) is cut into sentence blocks by greedy sentence filling; two transformers of
shared-layer parts (`labformer.layers.block`) encode it bottom-up:

    blocks   = greedy_sentence_blocks(tokens)             spans of <= block_len tokens
    h        = WordEncoder(N(E_tok[block] + P_w))          per block; N a norm
    e_j      = normalize(W_b mean_t h_t)                   the j-th block vector
    g        = DocEncoder(N(e_j + P_j), j = 1..n)          the first n <= max_blocks blocks
    d        = W_d mean_j g_j                              the document vector (`pooled`)

Two documents are scored by cos(d_1, d_2) with shared weights (objectives/smith.py).
`forward` meets the LM contract `tokens[B,T] -> hidden[B,T,D]` with the word-level states
(what the masked word LM reads; zeros at the padding). Departures, each for a reason: a
sentence longer than a block is split into block-long pieces (the reference code truncates
it, losing text); blocks and documents are mean-pooled instead of read at a first [CLS]
position (from scratch, a [CLS] output starts out the same for every input and the matching
loss collapses it; the mean starts as a bag of words), so the document vector sees the block
order only through the block position embeddings P; the pooler has no tanh (it saturated
into one sign pattern for all documents). Blocks of one length (and documents of one block
count) are encoded together without padding, so no attention mask is needed and every
registered attention variant works unchanged; a document's vector never depends on what else
is in the batch. With `causal=true` (next-token data) the blocks are fixed windows of
block_len tokens under causal attention (packing whole sentences would look ahead to where a
sentence ends); the document vector needs `causal=false`.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from labformer.errors import UserError
from labformer.layers.block import TransformerBlock
from labformer.layers.build import build_layer
from labformer.models.lm.base import LMBackbone
from labformer.registry import register

Spans = list[tuple[int, int]]  # [start, end) of each block of one document


def document_length(ids: np.ndarray, pad_token: int | None) -> int:
    """Tokens before the trailing run of `pad_token` (all of them when it is None)."""
    if pad_token is None:
        return len(ids)
    real = np.flatnonzero(ids != pad_token)
    return int(real[-1]) + 1 if len(real) else 0


def greedy_sentence_blocks(tokens: Sequence[int] | np.ndarray, block_len: int, sep_token: int | None,
                           pad_token: int | None = None) -> Spans:
    """Greedy sentence filling: whole sentences (each ending at `sep_token`) go into the current block
    while it stays within `block_len` tokens; the sentence that would overflow starts the next block.
    A sentence longer than `block_len` is first cut into pieces of `block_len` (the last one shorter,
    which later sentences may join). Without `sep_token` the blocks are plain windows."""
    ids = np.asarray(tokens)
    n = document_length(ids, pad_token)
    ends = [] if sep_token is None else (np.flatnonzero(ids[:n] == sep_token) + 1).tolist()
    bounds = sorted({0, n, *ends})
    blocks: Spans = []
    start = end = 0  # the open block [start, end); pieces are contiguous, so a piece starts at `end`
    for s, e in zip(bounds[:-1], bounds[1:]):
        for p in range(s, e, block_len):
            q = min(p + block_len, e)
            if end > start and q - start <= block_len:
                end = q
            else:
                if end > start:
                    blocks.append((start, end))
                start, end = p, q
    if end > start:
        blocks.append((start, end))
    return blocks


def _stack(n: int, dim: int, num_heads: int, causal: bool, max_len: int, layers: dict[str, Any]) -> nn.ModuleList:
    return nn.ModuleList(TransformerBlock(dim, num_heads, causal, max_len, **layers) for _ in range(n))


class DocumentEncoder(nn.Module):
    """Block states -> document vector: the block vectors, block position embeddings, the document-level
    transformer and its pooler."""

    def __init__(self, dim: int, depth: int, num_heads: int, max_blocks: int, layers: dict[str, Any],
                 norm: str, norm_kwargs: dict[str, Any]) -> None:
        super().__init__()
        self.block_pool = nn.Linear(dim, dim)
        self.position = nn.Embedding(max_blocks, dim)  # block position embeddings P_j
        self.embed_norm = build_layer("norm", norm, "model.norm_kwargs", dim=dim, **norm_kwargs)
        self.blocks = _stack(depth, dim, num_heads, False, max_blocks, layers)
        self.norm = build_layer("norm", norm, "model.norm_kwargs", dim=dim, **norm_kwargs)
        self.pool = nn.Linear(dim, dim)
        self.drop = nn.Dropout(layers["dropout"])

    def block_vectors(self, block_states: torch.Tensor) -> torch.Tensor:
        """e = normalize(W_b h) of the mean word-level states of blocks [K, D]."""
        return F.normalize(self.block_pool(block_states), dim=-1)

    def forward(self, vectors: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(document vectors [B, D], contextual block states per document [n_i, D]) of block vectors [n_i, D]."""
        counts = torch.tensor([len(v) for v in vectors])
        docs: list[torch.Tensor | None] = [None] * len(vectors)
        states: list[torch.Tensor | None] = [None] * len(vectors)
        for n in counts.unique().tolist():
            members = (counts == n).nonzero().squeeze(1).tolist()
            x = torch.stack([vectors[i] for i in members])
            if n:  # a document without a block (all padding) keeps a zero state
                x = self.drop(self.embed_norm(x + self.position.weight[:n]))
                for block in self.blocks:
                    x = block(x)
                x = self.norm(x)
            pooled = x.mean(1) if n else x.new_zeros(len(members), x.shape[-1])
            for k, i in enumerate(members):
                docs[i], states[i] = pooled[k], x[k]
        return self.pool(torch.stack(docs)), states


@register("smith", task="lm", paper="Yang et al., CIKM 2020 (SMITH)")
class SMITH(LMBackbone):
    def __init__(self, vocab_size: int, max_len: int, causal: bool = False, block_len: int = 32,
                 max_blocks: int = 48, dim: int = 128, num_heads: int = 4, word_depth: int = 4, doc_depth: int = 3,
                 sep_token: int | None = 1, pad_token: int | None = 0, attention: str = "softmax",
                 attention_kwargs: dict[str, Any] | None = None, norm: str = "layernorm",
                 norm_kwargs: dict[str, Any] | None = None, ffn: str = "mlp",
                 ffn_kwargs: dict[str, Any] | None = None, dropout: float = 0.0) -> None:
        """Defaults: the paper's 32-token blocks, 48 blocks per document (SMITH-WP+SP), 4 word-level and 3
        document-level layers, at a CPU width of 128. block_len: tokens per sentence block; max_blocks:
        blocks the document level reads (later ones are dropped, as in the paper); sep_token: the id that
        ends a sentence (null: plain windows); pad_token: the id a document is padded with at its end
        (null: no padding; long_doc_pairs uses pad 0, sentence end 1, mask 2); attention / norm / ffn
        (+ their _kwargs) and dropout: the parts of both transformers, as in gpt."""
        super().__init__()
        if min(vocab_size, max_len, block_len, max_blocks, dim, num_heads, word_depth, doc_depth) < 1:
            raise UserError("smith needs vocab_size, max_len, block_len, max_blocks, dim, num_heads, word_depth "
                            "and doc_depth >= 1")
        for key, token in (("sep_token", sep_token), ("pad_token", pad_token)):
            if token is not None and not 0 <= token < vocab_size:
                raise UserError(f"model.{key}={token} is not a token id of this vocabulary (0..{vocab_size - 1}); "
                                f"set it to the data's id, or null")
        self.vocab_size, self.max_len, self.causal, self.num_features = vocab_size, max_len, causal, dim
        self.block_len, self.max_blocks, self.sep_token, self.pad_token = block_len, max_blocks, sep_token, pad_token
        layers = dict(attention=attention, attention_kwargs=attention_kwargs, norm=norm, ffn=ffn,
                      ffn_kwargs=ffn_kwargs, dropout=dropout, norm_kwargs=norm_kwargs)
        self.token_embedding = nn.Embedding(vocab_size, dim)
        self.position = nn.Embedding(block_len, dim)  # word positions inside a block
        self.embed_norm = build_layer("norm", norm, "model.norm_kwargs", dim=dim, **(norm_kwargs or {}))
        self.drop = nn.Dropout(dropout)
        self.blocks = _stack(word_depth, dim, num_heads, causal, block_len, layers)
        self.norm = build_layer("norm", norm, "model.norm_kwargs", dim=dim, **(norm_kwargs or {}))
        self.document = DocumentEncoder(dim, doc_depth, num_heads, max_blocks, layers, norm, norm_kwargs or {})
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """BERT's init: N(0, 0.02) weights, zero biases; the writes into the residual stream (`out_proj`)
        scaled by 1/sqrt(2 depth). Layer-specific parameters keep their own init."""
        depth = max(len(self.blocks), len(self.document.blocks))
        for name, module in self.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                std = 0.02 / math.sqrt(2 * depth) if name.endswith("out_proj") else 0.02
                nn.init.normal_(module.weight, mean=0.0, std=std)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)

    # -- the hierarchy, step by step (the objectives use the steps) -----------------------------
    def split(self, tokens: torch.Tensor) -> list[Spans]:
        """The sentence blocks of every row of tokens[B,T] (fixed windows when causal)."""
        rows = tokens.detach().cpu().numpy()
        if self.causal:
            return [[(s, min(s + self.block_len, n)) for s in range(0, n, self.block_len)]
                    for n in (document_length(r, self.pad_token) for r in rows)]
        return [greedy_sentence_blocks(r, self.block_len, self.sep_token, self.pad_token) for r in rows]

    def encode_blocks(self, tokens: torch.Tensor, spans: list[Spans], token_states: bool = True
                      ) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
        """(word-level states [B,T,D] or None, block vectors [N_i, D] per document) of the blocks `spans`."""
        b, t = tokens.shape
        dim, dev = self.num_features, tokens.device
        flat = torch.tensor([(i, s, e - s) for i, doc in enumerate(spans) for s, e in doc], dtype=torch.long)
        flat = flat.view(-1, 3)
        rows, starts, lengths = flat.unbind(1)
        means, order, states, where = [], [], [], []
        for length in lengths.unique().tolist():  # one batch per block length: no padding, no mask
            idx = (lengths == length).nonzero().squeeze(1)
            pos = starts[idx, None] + torch.arange(length)
            row = rows[idx, None].expand_as(pos)
            x = self.token_embedding(tokens[row.to(dev), pos.to(dev)]) + self.position.weight[:length]
            x = self.drop(self.embed_norm(x))
            for block in self.blocks:
                x = block(x)
            x = self.norm(x)
            means.append(x.mean(1))
            order.append(idx)
            if token_states:
                states.append(x.reshape(-1, dim))
                where.append((row * t + pos).reshape(-1).to(dev))
        hidden = None
        if token_states:
            hidden = self.token_embedding.weight.new_zeros(b * t, dim)
            if states:
                values = torch.cat(states)
                hidden = hidden.to(values.dtype).index_put((torch.cat(where),), values)
            hidden = hidden.view(b, t, dim)
        if not means:
            return hidden, [self.token_embedding.weight.new_zeros(0, dim) for _ in spans]
        ordered = torch.cat(means)[torch.cat(order).argsort().to(dev)]
        vectors = self.document.block_vectors(ordered)
        return hidden, list(vectors.split([len(doc) for doc in spans]))

    # -- the family contract and the contrastive encoder's hook ---------------------------------
    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.shape[1] > self.max_len:
            raise UserError(f"sequence of {tokens.shape[1]} tokens is longer than the model's max_len={self.max_len}")
        return self.encode_blocks(tokens, self.split(tokens))[0]

    def pooled(self, tokens: torch.Tensor) -> torch.Tensor:
        """The document vectors [B, D] of tokens[B,T] (what the contrastive encoder compares)."""
        if self.causal:
            raise UserError("smith's document vector needs bidirectional blocks: build it with causal=false "
                            "(data whose DataModule sets causal=False, e.g. data=long_doc_pairs)")
        spans = [doc[: self.max_blocks] for doc in self.split(tokens)]
        return self.document(self.encode_blocks(tokens, spans, token_states=False)[1])[0]
