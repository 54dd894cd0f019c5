"""Asymmetric least squares baseline (Eilers and Boelens) as fixed tensor operations, so it exports to ONNX.

The baseline ``z`` of a spectrum ``y`` minimises
``sum_i w_i (y_i - z_i)^2 + lam * sum_i (z_{i-1} - 2 z_i + z_{i+1})^2``; the weights start at 1 and become ``p``
where ``y > z`` and ``1 - p`` elsewhere, for a fixed number of solves. Each solve is the pentadiagonal system
``(W + lam D'D) z = W y``. Grouping the points in pairs makes it block tridiagonal with 2x2 blocks, which odd-even
(cyclic) reduction solves in ``log2(L / 2)`` vectorised steps instead of ``L`` sequential ones: every step is a
handful of elementwise operations on the blocks' entries, so the graph is ONNX-exportable (no linear-algebra
operator is needed). Cyclic reduction is Gaussian elimination of a symmetric permutation of the matrix, which is
symmetric positive definite, so it needs no pivoting. It runs in float64: with ``lam`` up to 1e9 the system's
condition number is far beyond float32.
"""

import math

import torch
from torch import nn

__all__ = ["AsymmetricLeastSquares"]


# reason: a 2x2 block is 4 tensors [4, B, n] (entries 00, 01, 10, 11) and a 2-vector is [2, B, n], so every block
# product is a few elementwise operations; batched 2x2 MatMul nodes cost onnxruntime one tiny GEMM call per block.
def _mul(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.stack([x[0] * y[0] + x[1] * y[2], x[0] * y[1] + x[1] * y[3],
                        x[2] * y[0] + x[3] * y[2], x[2] * y[1] + x[3] * y[3]])


def _apply(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.stack([x[0] * v[0] + x[1] * v[1], x[2] * v[0] + x[3] * v[1]])


def _inverse(x: torch.Tensor) -> torch.Tensor:
    return torch.stack([x[3], -x[1], -x[2], x[0]]) / (x[0] * x[3] - x[1] * x[2])


def _solve_block_tridiagonal(lower: torch.Tensor, diag: torch.Tensor, upper: torch.Tensor,
                             rhs: torch.Tensor) -> torch.Tensor:
    """Solve ``lower_i x_{i-1} + diag_i x_i + upper_i x_{i+1} = rhs_i`` for ``n = 2^k - 1`` blocks.

    Args:
        lower, diag, upper: ``[4, B, n]`` 2x2 blocks (``lower_0`` and ``upper_{n-1}`` are zero).
        rhs: ``[2, B, n]``.

    Returns:
        ``x [2, B, n]``.
    """
    n = diag.shape[-1]
    if n == 1:
        return _apply(_inverse(diag), rhs)
    # reason: the even blocks are eliminated; every odd block keeps both neighbours, since n = 2^k - 1.
    inv_even = _inverse(diag[..., 0::2])
    left = -_mul(lower[..., 1::2], inv_even[..., :-1])
    right = -_mul(upper[..., 1::2], inv_even[..., 1:])
    lower_e, upper_e, rhs_e = lower[..., 0::2], upper[..., 0::2], rhs[..., 0::2]
    reduced = _solve_block_tridiagonal(
        _mul(left, lower_e[..., :-1]),
        diag[..., 1::2] + _mul(left, upper_e[..., :-1]) + _mul(right, lower_e[..., 1:]),
        _mul(right, upper_e[..., 1:]),
        rhs[..., 1::2] + _apply(left, rhs_e[..., :-1]) + _apply(right, rhs_e[..., 1:]),
    )
    # reason: back-substitution; the even blocks' missing outer neighbours have zero coupling, so pad with zeros.
    zero = torch.zeros_like(reduced[..., :1])
    before = torch.cat([zero, reduced], dim=-1)
    after = torch.cat([reduced, zero], dim=-1)
    even = _apply(inv_even, rhs_e - _apply(lower_e, before) - _apply(upper_e, after))
    # reason: interleave even and odd blocks back into place: [e0, o0, e1, o1, ..., e_last].
    pairs = torch.stack([even[..., :-1], reduced], dim=-1).flatten(-2)
    return torch.cat([pairs, even[..., -1:]], dim=-1)


class AsymmetricLeastSquares(nn.Module):
    """Subtract the asymmetric-least-squares baseline from every spectrum, along the last axis.

    Args:
        length: points ``L``.
        lam: smoothness ``lambda`` of the baseline (larger: stiffer).
        p: weight of the points above the baseline (``1 - p`` below), in (0, 1).
        n_solves: weighted smoothing solves (the first with all weights 1).

    Shapes:
        ``[..., L]`` -> ``[..., L]`` (the input minus its baseline), in the input's dtype.

    Example:
        >>> als = AsymmetricLeastSquares(64, lam=1e4, p=0.01, n_solves=10)
        >>> x = torch.linspace(0, 1, 64) * 3.0 + torch.exp(-((torch.arange(64) - 32.0) / 3) ** 2)
        >>> bool(als(x[None]).abs()[0, :10].max() < 0.05)
        True
    """

    def __init__(self, length: int, lam: float, p: float, n_solves: int):
        super().__init__()
        self.length, self.lam, self.p, self.n_solves = length, float(lam), float(p), int(n_solves)
        n_blocks = 2 ** max(1, math.ceil(math.log2(math.ceil(length / 2) + 1))) - 1
        self.padded = 2 * n_blocks
        penalty = _second_difference_penalty(length, self.padded) * self.lam
        # reason: the bands of lam * D'D, padded points decoupled; constants of the graph.
        self.register_buffer("band0", penalty.diagonal(0).clone(), persistent=False)
        self.register_buffer("band1", torch.cat([penalty.diagonal(1), torch.zeros(1, dtype=torch.float64)]),
                             persistent=False)
        self.register_buffer("band2", torch.cat([penalty.diagonal(2), torch.zeros(2, dtype=torch.float64)]),
                             persistent=False)

    def baseline(self, spectra: torch.Tensor) -> torch.Tensor:
        """The baseline ``[..., L]`` (float64) of ``spectra [..., L]``."""
        shape = spectra.shape
        y = spectra.reshape(-1, self.length).to(torch.float64)
        pad = self.padded - self.length
        # reason: padded points get weight 1 and data 0 with no coupling, so they solve to 0 and change nothing.
        y = torch.cat([y, torch.zeros(y.shape[0], pad, dtype=y.dtype, device=y.device)], dim=1)
        real = torch.cat([torch.ones(self.length, dtype=y.dtype, device=y.device),
                          torch.zeros(pad, dtype=y.dtype, device=y.device)])
        weights = torch.ones_like(y)
        z = y
        for _ in range(self.n_solves):
            z = self._solve(weights, y)
            weights = torch.where(y > z, self.p, 1.0 - self.p) * real + (1.0 - real)
        return z[:, : self.length].reshape(shape)

    def _solve(self, weights: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        a = self.band0 + weights  # [B, P] main diagonal
        b, c = self.band1.expand_as(a), self.band2.expand_as(a)
        zero = torch.zeros_like(a[:, 0::2])
        # reason: pair points (2j, 2j+1): diagonal block [[a0, b0], [b0, a1]], upper block [[c0, 0], [b1, c1]].
        diag = torch.stack([a[:, 0::2], b[:, 0::2], b[:, 0::2], a[:, 1::2]])
        upper = torch.stack([c[:, 0::2], zero, b[:, 1::2], c[:, 1::2]])
        transposed = torch.stack([upper[0], upper[2], upper[1], upper[3]])
        lower = torch.cat([torch.zeros_like(upper[..., :1]), transposed[..., :-1]], dim=-1)
        wy = weights * y
        rhs = torch.stack([wy[:, 0::2], wy[:, 1::2]])
        x = _solve_block_tridiagonal(lower, diag, upper, rhs)
        return torch.stack([x[0], x[1]], dim=-1).flatten(1)

    def forward(self, spectra: torch.Tensor) -> torch.Tensor:
        return (spectra.to(torch.float64) - self.baseline(spectra)).to(spectra.dtype)

    def extra_repr(self) -> str:
        return f"length={self.length}, lam={self.lam:g}, p={self.p:g}, n_solves={self.n_solves}"


def _second_difference_penalty(length: int, padded: int) -> torch.Tensor:
    """``D'D`` ``[padded, padded]`` (float64) of the second differences of the first ``length`` points."""
    d = torch.zeros(max(length - 2, 0), padded, dtype=torch.float64)
    rows = torch.arange(d.shape[0])
    d[rows, rows], d[rows, rows + 1], d[rows, rows + 2] = 1.0, -2.0, 1.0
    return d.T @ d
