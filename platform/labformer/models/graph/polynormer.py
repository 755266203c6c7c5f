"""Polynormer (Deng et al., ICLR 2024) with PyG's `Polynormer`: a local phase (GCN or GAT
with Hadamard-product gating, polynomial in the inputs) and then a global phase of
linear-time PolynormerAttention over each graph.

PyG 2.8.1 builds its `PolynormerAttention` layers for `hidden_channels` inputs although
they receive `heads * hidden_channels`, so `heads > 1` crashes in the global phase. This
module rebuilds those layers with the right width (`_fix_global_attention`) and returns
the node features before PyG's prediction layer and log-softmax (the task owns the head).
As in the paper's training, the global phase can wait `local_epochs` epochs: the local
phase learns first, then attention is switched on (the task calls `set_epoch`).
PyG's attention also masks only the values of padded positions, so padding (i.e. the
other graphs of a batch) leaks into the keys' normaliser; `MaskedPolynormerAttention`
masks the keys too:  out_i = q_i (sum_j k_j v_j^T) / (q_i . sum_j k_j), j over real nodes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Batch
from torch_geometric.nn.attention import PolynormerAttention
from torch_geometric.nn.models import Polynormer as PyGPolynormer
from torch_geometric.utils import to_dense_batch

from labformer.errors import UserError
from labformer.models.graph.base import GraphBackbone
from labformer.models.graph.common import NodeEncoder
from labformer.registry import register


class MaskedPolynormerAttention(PolynormerAttention):
    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        b, n, _ = x.shape
        shape = (b, n, self.head_channels, self.heads)
        h = self.h_lins(x)
        k = self.k(x).sigmoid().view(shape)
        q = k if self.qk_shared else self.q(x).sigmoid().view(shape)
        v = self.v(x).view(shape)
        if mask is not None:
            keep = mask[:, :, None, None].to(x.dtype)
            k, v = k * keep, v * keep
        kv = torch.einsum("bndh,bnmh->bdmh", k, v)
        num = torch.einsum("bndh,bdmh->bnmh", q, kv)
        den = torch.einsum("bndh,bdh->bnh", q, k.sum(1)).unsqueeze(2)
        out = self.lns((num / (den + 1e-6)).reshape(b, n, -1)) * (h + self.beta)
        return self.dropout(F.relu(self.lin_out(out)))


class Polynormer(PyGPolynormer, GraphBackbone):
    def __init__(self, in_dim: int, hidden: int, heads: int, local_layers: int, global_layers: int,
                 dropout: float, global_dropout: float, beta: float, local_attn: bool, use_global: bool,
                 lap_pe_dim: int = 0, rw_se_dim: int = 0, local_epochs: int = 0, in_dropout: float = 0.0,
                 mag_pe_dim: int = 0):
        super().__init__(hidden, hidden, 1, local_layers=local_layers, global_layers=global_layers, in_dropout=0.0,
                         dropout=dropout, global_dropout=global_dropout, heads=heads, beta=beta, local_attn=local_attn)
        self._fix_global_attention(hidden, heads, beta, global_dropout)
        del self.pred_local, self.pred_global  # the task owns the head
        del self.lin_in  # the encoder below reads the input (with its positional encodings)
        self.encoder = NodeEncoder(in_dim, hidden, lap_pe_dim, rw_se_dim, mag_pe_dim)
        self.use_global, self.local_epochs, self.in_dropout = use_global, local_epochs, in_dropout
        # A buffer, so a checkpoint taken in the local-only epochs is evaluated local-only too.
        self.register_buffer("global_phase", torch.tensor(use_global and local_epochs == 0))
        self.num_features = heads * hidden

    def set_epoch(self, epoch: int) -> None:
        """Local-only for the first `local_epochs` epochs, then local + global."""
        self.global_phase.fill_(self.use_global and epoch >= self.local_epochs)

    def _fix_global_attention(self, hidden: int, heads: int, beta: float, dropout: float) -> None:
        # Workaround for PyG 2.8.1: its layers take `hidden` channels, but x_local has heads * hidden.
        self.global_attn = torch.nn.ModuleList(
            MaskedPolynormerAttention(channels=heads * hidden, heads=heads, head_channels=hidden, beta=beta, dropout=dropout,
                                qk_shared=False)
            for _ in range(len(self.global_attn)))

    def forward(self, batch: Batch) -> Tensor:  # type: ignore[override]
        x, edge_index = self.encoder(batch), batch.edge_index
        x = F.dropout(x, p=self.in_dropout, training=self.training)  # the paper's input dropout, on the encoded features
        x_local = 0
        for i, local_conv in enumerate(self.local_convs):  # PyG's local phase, unchanged
            h = F.relu(self.h_lins[i](x))
            x = local_conv(x, edge_index) + self.lins[i](x)
            if self.post_bn:
                x = self.post_bns[i](x)
            x = F.dropout(F.relu(x), p=self.dropout, training=self.training)
            x = (1 - self.beta) * self.lns[i](h * x) + self.beta * x
            x_local = x_local + x
        if not self.global_phase:
            return x_local
        graph = batch.batch if batch.batch is not None else edge_index.new_zeros(x_local.shape[0])
        graph, order = graph.sort(stable=True)  # to_dense_batch needs nodes grouped by graph
        dense, mask = to_dense_batch(self.ln(x_local[order]), graph)
        for attn in self.global_attn:
            dense = attn(dense, mask)
        out = torch.empty_like(x_local)
        out[order] = dense[mask]
        return out


@register("polynormer", task="graph", paper="Deng et al. 2024")
def polynormer(in_dim: int = 1, edge_dim: int = 0, lap_pe_dim: int = 0, rw_se_dim: int = 0, hidden: int = 32,
               heads: int = 2, local_layers: int = 3, global_layers: int = 2, dropout: float = 0.0,
               global_dropout: float = 0.0, beta: float = 0.9, local_attn: bool = False,
               use_global: bool = True, local_epochs: int = 0, in_dropout: float = 0.0,
               mag_pe_dim: int = 0) -> Polynormer:
    """hidden: per head (node features are heads * hidden wide); in_dropout: dropout on the encoded input
    features; local_attn: GAT local phase instead of GCN; use_global: run the global (linear attention) phase
    after the local one; local_epochs: epochs with the local phase only before the global phase joins (the
    paper: 100-200). edge_dim is accepted and ignored: Polynormer does not read edge features."""
    if local_epochs < 0:
        raise UserError(f"model.local_epochs={local_epochs} must be >= 0 (epochs before the global phase starts)")
    return Polynormer(in_dim, hidden, heads, local_layers, global_layers, dropout, global_dropout, beta, local_attn,
                      use_global, lap_pe_dim, rw_se_dim, local_epochs, in_dropout, mag_pe_dim)
