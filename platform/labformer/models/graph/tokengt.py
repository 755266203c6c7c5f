"""TokenGT (Kim et al., NeurIPS 2022, "Pure Transformers are Powerful Graph Learners"): every node
and every edge of a graph is one token of a plain transformer encoder, with no graph-specific
attention at all. With node identifiers P in R^{N x d_p} and features X:

    node v:      z_v     = W_in [X_v,     P_v, P_v] + E^V
    edge (u,v):  z_(u,v) = W_in [X_(u,v), P_u, P_v] + E^E
    Z = Encoder(z_1 .. z_{N+E}),   node features = LayerNorm(Z[node tokens])

X_v is the NodeEncoder's embedding (node features + any lap_pe / rw_se / mag_pe the data carry),
X_(u,v) the EdgeEncoder's (zero without edge features); every stored edge is one token, so an
undirected edge stored both ways gives two, (u,v) and (v,u), as in the paper. E^V, E^E are the two
learned type identifiers. Node identifiers (`node_id`):

- `orf`: orthonormal random features, P = (first N columns of Q)^T with Q R = G, G ~ N(0,1)^{d_p x n_max}
  (signs fixed by diag R, so Q is Haar): P P^T = I. A fresh draw per graph and forward in training;
  in eval the first N rows of one fixed seeded orthogonal d_p x d_p matrix, so evaluation is
  deterministic and independent of the batch. Needs d_p >= N (`max_nodes` = node_id_dim).
- `lap`: Laplacian eigenvectors from the platform's `LaplacianPE` (cached per dataset through
  `data_transform`), each column's sign flipped at random per graph in training.

Each graph is its own token sequence: graphs are padded to the longest N+E of the batch and a key
padding mask keeps attention inside a graph. The layers are the platform's pre-norm TransformerBlock
(registry softmax attention, mlp FFN, LayerNorm, causal=False); its forward takes no mask, so the
softmax attention is swapped for a subclass that reads the padding mask set before each call.

Deviations from the paper: (1) the type identifiers are added after W_in rather than concatenated
before it (the same function: W_in [.., E] is a learned vector per type); (2) `lap` uses
LaplacianPE's eigenvectors 2..d_p+1 of the symmetric normalised Laplacian (zero-padded on small
graphs), i.e. without the trivial one the authors' code keeps; (3) ORF needs d_p >= N for exact
orthonormality, where the authors truncate an n_max x n_max draw to d_p columns; (4) no graph
token: the graph task pools the node outputs; (5) pre-LN blocks with GELU, a final LayerNorm.
Dense attention over N+E tokens: for small graphs (molecules, SBM).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Batch, Data

from labformer.data.graph.encodings import LaplacianPE
from labformer.errors import UserError
from labformer.layers.attention.softmax import SoftmaxAttention
from labformer.layers.block import TransformerBlock
from labformer.models.graph.base import GraphBackbone
from labformer.models.graph.common import EdgeEncoder, NodeEncoder
from labformer.registry import register

NODE_IDS = ("orf", "lap")
DENSE_MAX_NODES = 256  # N + E tokens attend densely per graph: small graphs only (as Graphormer)
EVAL_SEED = 0  # the fixed ORF draw used in eval


class LaplacianNodeIds(LaplacianPE):
    """`node_id_lap` [N, k]: LaplacianPE's eigenvectors under a name of its own, so data.lap_pe_dim
    (the node encoder's input) and the identifiers' d_p can differ."""

    name, adds = "node_id_lap", ("node_id_lap",)

    def forward(self, data: Data) -> Data:
        data.node_id_lap = LaplacianPE(self.k)(Data(edge_index=data.edge_index, num_nodes=data.num_nodes)).lap_pe
        return data


class PaddedSoftmax(SoftmaxAttention):
    """The registry's softmax attention with a key padding mask (`key_mask` [B, T], True = a real
    token), set by the backbone around each call because QKVAttention.forward takes x only."""

    key_mask: Tensor | None = None

    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        mask = None if self.key_mask is None else self.key_mask[:, None, None, :]
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.attn_dropout)


def graph_ids(batch: Batch) -> tuple[Tensor, int]:
    n = batch.num_nodes
    graph = batch.batch if getattr(batch, "batch", None) is not None else batch.edge_index.new_zeros(n)
    return graph, int(graph.max()) + 1 if n else 1


def tokenize(batch: Batch, x_node: Tensor, x_edge: Tensor, node_id: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Padded token sequences: (tokens [B, T, F + 2 d_p] = [X, P_u, P_v], is_edge [B, T], keep [B, T],
    slot [N]: each node's position in its graph's sequence). A graph's N nodes come first, then its
    E edges in stored order; T = max over graphs of N + E."""
    graph, b = graph_ids(batch)
    src, dst = batch.edge_index
    graph_e = graph[src]
    n_size = torch.bincount(graph, minlength=b)
    e_size = torch.bincount(graph_e, minlength=b)
    slot = torch.arange(len(graph), device=graph.device) - (n_size.cumsum(0) - n_size)[graph]  # nodes sorted by graph
    order = torch.argsort(graph_e, stable=True)
    rank = torch.empty_like(graph_e)
    rank[order] = torch.arange(len(graph_e), device=graph.device) - (e_size.cumsum(0) - e_size)[graph_e[order]]
    slot_e = n_size[graph_e] + rank
    nodes = torch.cat([x_node, node_id, node_id], 1)
    edges = torch.cat([x_edge, node_id[src], node_id[dst]], 1)
    t = int((n_size + e_size).max())
    tokens = nodes.new_zeros(b, t, nodes.shape[1])
    tokens[graph, slot], tokens[graph_e, slot_e] = nodes, edges
    keep = torch.zeros(b, t, dtype=torch.bool, device=graph.device)
    keep[graph, slot], keep[graph_e, slot_e] = True, True
    is_edge = torch.zeros_like(keep)
    is_edge[graph_e, slot_e] = True
    return tokens, is_edge, keep, slot


def haar_rows(g: Tensor) -> Tensor:
    """Gaussian [B, d, n] (n <= d) -> [B, n, d] with orthonormal rows: Q^T of g = QR, with Q's column
    signs set so diag R > 0, which makes Q uniform (Haar) rather than biased by the QR convention."""
    q, r = torch.linalg.qr(g)
    sign = torch.where(torch.diagonal(r, dim1=-2, dim2=-1) < 0, -1.0, 1.0).to(q.dtype)
    return (q * sign[..., None, :]).transpose(-2, -1)


class TokenGT(GraphBackbone):
    def __init__(self, in_dim: int, edge_dim: int, hidden: int, num_layers: int, heads: int, dropout: float,
                 node_id: str, node_id_dim: int, lap_pe_dim: int = 0, rw_se_dim: int = 0, mag_pe_dim: int = 0):
        super().__init__()
        self.num_features, self.node_id, self.node_id_dim = hidden, node_id, node_id_dim
        # ORF rows are orthonormal only for N <= d_p: the DataModule refuses bigger graphs up front
        self.max_nodes = min(node_id_dim, DENSE_MAX_NODES) if node_id == "orf" else DENSE_MAX_NODES
        self.data_transform = LaplacianNodeIds(node_id_dim) if node_id == "lap" else None
        self.encoder = NodeEncoder(in_dim, hidden, lap_pe_dim, rw_se_dim, mag_pe_dim)
        self.edges = EdgeEncoder(edge_dim, hidden)
        self.w_in = nn.Linear(hidden + 2 * node_id_dim, hidden)
        self.types = nn.Embedding(2, hidden)  # E^V, E^E
        self.blocks = nn.ModuleList()
        for _ in range(num_layers):
            block = TransformerBlock(hidden, heads, causal=False, max_len=1, attention="softmax", dropout=dropout)
            block.attn = PaddedSoftmax(hidden, heads, causal=False, max_len=1, dropout=dropout)  # max_len: unused
            self.blocks.append(block)
        self.norm = nn.LayerNorm(hidden)
        if node_id == "orf":  # eval's fixed draw; rebuilt from the seed, so kept out of checkpoints
            g = torch.Generator().manual_seed(EVAL_SEED)
            self.register_buffer("eval_orf", haar_rows(torch.randn(1, node_id_dim, node_id_dim, generator=g))[0],
                                 persistent=False)

    def node_identifiers(self, batch: Batch) -> Tensor:
        """P [N, d_p]: orthonormal rows per graph (orf) or the Laplacian eigenvectors (lap)."""
        graph, b = graph_ids(batch)
        sizes = torch.bincount(graph, minlength=b)
        local = torch.arange(len(graph), device=graph.device) - (sizes.cumsum(0) - sizes)[graph]
        if self.node_id == "lap":
            p = getattr(batch, "node_id_lap", None)
            if p is None:
                raise ValueError("tokengt: the batch has no node_id_lap; apply model.data_transform (LaplacianNodeIds)"
                                 " to every graph first - the graph task does this through the DataModule")
            if self.training:  # eigenvectors are defined up to sign (Kim et al. flip them at random)
                p = p * (torch.randint(0, 2, (b, p.shape[1]), device=p.device) * 2 - 1)[graph]
            return p.float()
        n_max = int(sizes.max()) if len(graph) else 0
        if n_max > self.node_id_dim:
            raise UserError(f"model.node_id_dim={self.node_id_dim} is below a graph of {n_max} nodes: orf node "
                            f"identifiers need node_id_dim >= the nodes of the largest graph. Fix: "
                            f"model.node_id_dim={n_max} or more, or model.node_id=lap")
        if not self.training:
            return self.eval_orf[local]
        with torch.no_grad():
            q = haar_rows(torch.randn(b, self.node_id_dim, max(n_max, 1), device=graph.device))
        return q[graph, local]

    def forward(self, batch: Batch) -> Tensor:
        x_node = self.encoder(batch)
        x_edge = self.edges(batch)
        if x_edge is None:  # no edge features: edge tokens differ by identifiers and type only
            x_edge = x_node.new_zeros(batch.edge_index.shape[1], x_node.shape[1])
        tokens, is_edge, keep, slot = tokenize(batch, x_node, x_edge, self.node_identifiers(batch).to(x_node.dtype))
        h = self.w_in(tokens) + self.types(is_edge.long())
        try:
            for block in self.blocks:
                block.attn.key_mask = keep
                h = block(h)
        finally:
            for block in self.blocks:
                block.attn.key_mask = None
        graph, _ = graph_ids(batch)
        return self.norm(h[graph, slot])


# exactly_equivariant=False: node identifiers label the nodes, so relabelling a graph changes its outputs;
# TokenGT is permutation-equivariant only in expectation over the identifiers (Kim et al. 2022).
@register("tokengt", task="graph", paper="Kim et al. 2022", exactly_equivariant=False)
def tokengt(in_dim: int = 1, edge_dim: int = 0, lap_pe_dim: int = 0, rw_se_dim: int = 0, hidden: int = 64,
            num_layers: int = 4, heads: int = 4, dropout: float = 0.0, node_id: str = "orf", node_id_dim: int = 128,
            mag_pe_dim: int = 0) -> TokenGT:
    """node_id: orf (orthonormal random features) or lap (Laplacian eigenvectors); node_id_dim: d_p, the
    width of each identifier (orf: at least the nodes of the largest graph)."""
    if node_id not in NODE_IDS:
        raise UserError(f"model.node_id={node_id!r} is unknown. Fix: model.node_id=orf or model.node_id=lap")
    if node_id_dim < 1:
        raise UserError(f"model.node_id_dim={node_id_dim} must be >= 1. Fix: e.g. model.node_id_dim=128")
    if hidden % heads:
        raise UserError(f"model.hidden={hidden} must be divisible by model.heads={heads}")
    return TokenGT(in_dim, edge_dim, hidden, num_layers, heads, dropout, node_id, node_id_dim, lap_pe_dim, rw_se_dim,
                   mag_pe_dim)
