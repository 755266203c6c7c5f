"""Magnetic-Laplacian positional encodings for directed graphs (Geisler et al., ICML 2023,
"Transformers Meet Directed Graphs"), the direction-aware sibling of `LaplacianPE` (`data.mag_pe_dim`).

With A the directed adjacency (A_uv = 1 for an edge u -> v of `edge_index` as given, NOT
symmetrised; repeated edges count once, self-loops are dropped as in LapPE):

    A_s   = 1[(A + A^T) / 2 > 0]          binary symmetrised: an edge in either or both directions
    Theta = 2 pi q (A - A^T)              +2 pi q along a one-way edge, -2 pi q against it, 0 both ways
    H     = A_s ⊙ exp(i Theta)            Hermitian (H^* = H)
    L     = I - D_s^-1/2 H D_s^-1/2       D_s = diag(A_s 1); D_s^-1/2 is 0 on isolated nodes (L_ii = 1)

L is Hermitian positive semi-definite with eigenvalues in [0, 2]. `mag_pe` [N, 2k] is
[Re U, Im U] for U [N, k] the eigenvectors of the k smallest eigenvalues, ascending; columns
beyond N are zero. At q = 0, H = A_s and L is the symmetric normalised Laplacian of the
undirected graph (Im U = 0). For q > 0 the phases carry direction: reversing every edge
conjugates L, hence U, and flips the sign of Im U. On graphs whose edges all come in both
directions Theta = 0 and the encoding is real: the transform reads a graph's `directed_edge_index`
(the one-way edges of a directed dataset, e.g. directed_order) when it has one, else `edge_index`,
which base.py's contract stores in both directions.

An eigenvector is defined up to a factor e^{i phi} (a sign when real): each is rotated so that
its entry of largest magnitude (the first within 1e-6 of it) is real and positive, which makes
the cache reproducible. Within a repeated eigenvalue the basis stays arbitrary, as for LapPE.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import eigsh
from torch_geometric.data import Data

from labformer.data.graph.cache import CachedTransform
from labformer.errors import UserError

# Up to this many nodes a dense eigh (exact, all eigenvectors); above, ARPACK on the sparse L
# (a dense 20k-node complex matrix alone would take 6 GiB).
DENSE_MAX_NODES = 2048
_TIE = 1e-6  # magnitudes this close count as equal when choosing an eigenvector's pivot entry


def check_q(q: float, where: str = "data.mag_pe_q") -> None:
    # q and 1 - q give conjugate encodings and q = 1/2 makes H real (+-1): nothing beyond 1/2 is new.
    if not isinstance(q, (int, float)) or isinstance(q, bool) or not 0 <= q <= 0.5:
        raise UserError(f"{where}={q!r} is out of range. Fix: 0 <= {where} <= 0.5 (0: the undirected "
                        "Laplacian; the paper's default is 0.25)")


def magnetic_laplacian(edge_index: torch.Tensor, num_nodes: int, q: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalised magnetic Laplacian as COO (index [2, E'], value [E']) of the off-diagonal part
    -D_s^-1/2 H D_s^-1/2 (the identity is added by the callers); value is float64 when every phase is
    real (q = 0, q = 1/2, or no one-way edge), complex128 otherwise."""
    n = num_nodes
    src, dst = edge_index.long().cpu()
    keep = src != dst
    directed = torch.unique(src[keep] * n + dst[keep])  # A as the set of keys u*n+v
    u, v = directed // n, directed % n
    sym = torch.unique(torch.cat([directed, v * n + u]))  # A_s
    row, col = sym // n, sym % n
    # A_uv - A_vu per entry of A_s: +1 along a one-way edge, -1 against it, 0 for both directions
    sign = torch.isin(sym, directed).double() - torch.isin(col * n + row, directed).double()
    deg = torch.bincount(row, minlength=n).double()
    inv_sqrt = torch.where(deg > 0, deg.clamp(min=1).rsqrt(), torch.zeros_like(deg))
    scale = -inv_sqrt[row] * inv_sqrt[col]
    theta = 2 * math.pi * q * sign
    if bool((torch.sin(theta).abs() < 1e-12).all()):
        value = scale * torch.cos(theta)  # real: exact zeros in Im U, a real basis of repeated eigenvalues
    else:
        value = scale * torch.polar(torch.ones_like(theta), theta)  # scale * exp(i theta)
    return torch.stack([row, col]), value


def magnetic_eigh(edge_index: torch.Tensor, num_nodes: int, q: float, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(eigenvalues [m], eigenvectors [N, m]) of the min(k, N) smallest eigenvalues of L, ascending,
    each eigenvector rotated to the phase convention of the module docstring."""
    n = num_nodes
    index, value = magnetic_laplacian(edge_index, n, q)
    m = min(k, n)
    if m == 0:
        return torch.zeros(0, dtype=torch.float64), torch.zeros(n, 0, dtype=value.dtype)
    if n <= DENSE_MAX_NODES or m >= n - 1:
        lap = torch.eye(n, dtype=value.dtype)
        lap[index[0], index[1]] += value
        lam, vec = torch.linalg.eigh(lap)
        lam, vec = lam[:m], vec[:, :m]
    else:
        lap = sp.identity(n, dtype=value.numpy().dtype, format="csr") + sp.csr_matrix(
            (value.numpy(), (index[0].numpy(), index[1].numpy())), shape=(n, n))
        # a fixed start vector: ARPACK's default is random, which would make the cache irreproducible
        lam, vec = eigsh(lap, k=m, which="SA", v0=np.ones(n, dtype=lap.dtype))
        order = np.argsort(lam)
        lam, vec = torch.from_numpy(lam[order].real.copy()), torch.from_numpy(vec[:, order].copy())
    return lam.double(), fix_phase(vec)


def fix_phase(vec: torch.Tensor) -> torch.Tensor:
    """Each column times e^{-i arg(pivot)}, pivot its first entry of largest magnitude (up to 1e-6):
    the pivot becomes real positive (for real vectors: a sign flip)."""
    if vec.numel() == 0:
        return vec
    mag = vec.abs()
    pivot_row = (mag >= mag.max(0, keepdim=True).values - _TIE).int().argmax(0)  # the first such row
    pivot = vec[pivot_row, torch.arange(vec.shape[1])]
    return vec * (pivot.conj() / pivot.abs())


class MagneticLaplacianPE(CachedTransform):
    """`mag_pe` [N, 2k] = [Re U, Im U], U the eigenvectors of the k smallest eigenvalues of the
    normalised magnetic Laplacian with potential q (equations in the module docstring)."""

    name, adds = "mag_pe", ("mag_pe",)

    def __init__(self, k: int, q: float = 0.25):
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise UserError(f"data.mag_pe_dim={k!r}: the magnetic encoding needs k >= 1 eigenvectors. "
                            "Fix: data.mag_pe_dim=<positive int> (0 in the data config turns it off)")
        check_q(q)
        self.k, self.q = k, float(q)

    @property
    def cache_key(self) -> dict[str, Any]:
        return {"name": self.name, "k": self.k, "q": self.q, "normalization": "sym", "phase": "max-abs-real"}

    def forward(self, data: Data) -> Data:
        n = data.num_nodes
        # A directed dataset keeps its one-way edges beside the symmetric edge_index (base.py's contract).
        edges = data.directed_edge_index if "directed_edge_index" in data else data.edge_index
        _, vec = magnetic_eigh(edges, n, self.q, self.k)
        m = vec.shape[1]
        pe = torch.zeros(n, 2 * self.k)  # zero-padded when k > N
        pe[:, :m] = vec.real.float()
        if vec.is_complex():
            pe[:, self.k:self.k + m] = vec.imag.float()
        data.mag_pe = pe
        return data
