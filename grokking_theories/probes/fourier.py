"""Real Fourier analysis on Z_p: the basis, per-frequency norms, sparsity indices, 2-D transforms.

Pure functions on torch tensors (array-likes are converted; integer input
becomes float64; floating input keeps its dtype, so pass float64 for
float64 results). Everything is built on one orthonormal real basis of
functions of x in 0..p-1 (:func:`fourier_basis`), the basis of Nanda et al.
(2023)'s analysis code:

* row 0: the constant 1/sqrt(p);
* then, for k = 1 .. (p-1)//2, the pair cos(w_k x) sqrt(2/p), sin(w_k x) sqrt(2/p), w_k = 2 pi k / p;
* for even p one last row, the Nyquist frequency k = p/2: cos(pi x) / sqrt(p) = (-1)^x / sqrt(p)
  (its sine vanishes on the integers, so that frequency has one component only).

So there are ``p // 2`` frequencies k = 1 .. p//2 for every p >= 2; for odd p
(every modulus the studies use) each has a cosine and a sine.

Grid functions of (a, b) -- logits, hidden activations -- are laid out
(..., p, p, n): the two grid axes, then one axis of features (classes,
neurons). :func:`fft2d` takes the grid axes as an argument.
"""
from __future__ import annotations

import functools
import math
from typing import Sequence

import numpy as np
import torch

__all__ = ["basis_frequencies", "basis_labels", "cos_coefficients", "fft2d", "fourier_basis",
           "frequency_block_fractions", "frequency_norms", "gini", "ifft2d", "ipr", "key_components",
           "n_frequencies", "null_gini", "sum_directions"]


def _as_float(x) -> torch.Tensor:
    t = torch.as_tensor(x)
    return t if t.is_floating_point() else t.to(torch.float64)


def _check_p(p) -> int:
    if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or p < 2:
        raise ValueError(f"p must be an integer >= 2, got {p!r}")
    return int(p)


def n_frequencies(p: int) -> int:
    """Number of non-constant frequencies k = 1 .. p//2."""
    return _check_p(p) // 2


def basis_frequencies(p: int) -> torch.Tensor:
    """Frequency of each row of :func:`fourier_basis`: LongTensor (p,), 0 for the constant row."""
    p = _check_p(p)
    freqs = [0] + [k for k in range(1, (p - 1) // 2 + 1) for _ in (0, 1)]
    if p % 2 == 0:
        freqs.append(p // 2)
    return torch.tensor(freqs, dtype=torch.long)


def basis_labels(p: int) -> list[str]:
    """Names of the rows of :func:`fourier_basis`: 'const', 'cos 1', 'sin 1', ... ('cos p/2' last for even p)."""
    p = _check_p(p)
    labels = ["const"] + [f"{fn} {k}" for k in range(1, (p - 1) // 2 + 1) for fn in ("cos", "sin")]
    if p % 2 == 0:
        labels.append(f"cos {p // 2}")
    return labels


def fourier_basis(p: int, *, dtype=torch.float64, device=None) -> torch.Tensor:
    """Orthonormal real Fourier basis of functions on 0..p-1, one basis vector per row.

    Parameters
    ----------
    p : int
        Modulus, >= 2.
    dtype, device
        Of the returned tensor (built in float64, then cast).

    Returns
    -------
    torch.Tensor (p, p)
        ``B`` with ``B @ B.T = I``; row order and labels as in :func:`basis_labels`.
        The coefficients of a function f (a length-p vector) are ``B @ f``.
    """
    p = _check_p(p)
    x = torch.arange(p, dtype=torch.float64)
    rows = [torch.full((p,), p ** -0.5, dtype=torch.float64)]
    for k in range(1, (p - 1) // 2 + 1):
        angle = 2 * math.pi * k * x / p
        rows += [torch.cos(angle) * math.sqrt(2 / p), torch.sin(angle) * math.sqrt(2 / p)]
    if p % 2 == 0:
        rows.append(torch.cos(math.pi * x) / math.sqrt(p))
    return torch.stack(rows).to(dtype=dtype, device=device)


def frequency_norms(W, p: int, *, include_constant: bool = False) -> torch.Tensor:
    """Norm of each frequency's component of the p rows of ``W``.

    Parameters
    ----------
    W : tensor (..., p, d)
        p rows (e.g. the embeddings of the numbers 0..p-1), d features; leading axes are batch axes.
    p : int
    include_constant : bool
        Also return the constant (DC) component's norm, first.

    Returns
    -------
    torch.Tensor (..., p//2) or (..., p//2 + 1)
        For frequency k, ``sqrt(sum_d |c_{cos k, d}|^2 + |c_{sin k, d}|^2)``
        with ``c = B @ W``; the sum of the squares of all of them (constant
        included) is ``||W||_F^2``.
    """
    W = _as_float(W)
    p = _check_p(p)
    if W.dim() < 2 or W.shape[-2] != p:
        raise ValueError(f"W must be (..., p, d) with p = {p}, got shape {tuple(W.shape)}")
    coef = fourier_basis(p, dtype=W.dtype, device=W.device) @ W
    power = coef.pow(2).sum(-1)  # (..., p): one value per basis row
    per_freq = power.new_zeros(*power.shape[:-1], n_frequencies(p) + 1)
    per_freq.index_add_(-1, basis_frequencies(p).to(W.device), power)
    norms = per_freq.sqrt()
    return norms if include_constant else norms[..., 1:]


def gini(values) -> torch.Tensor:
    """Gini index (Hurley & Rickard 2009) of non-negative vectors along the last axis.

    With ``c_(1) <= ... <= c_(n)`` the sorted values,
    ``G = 1 - 2 sum_k (c_(k) / ||c||_1) (n - k + 1/2) / n``: 0 when every
    value is equal, ``1 - 1/n`` (its maximum) when one value is non-zero,
    ``1 - m/n`` for m equal non-zero values. Scale-invariant. NaN for an
    all-zero vector (no distribution to measure).
    """
    v = _as_float(values)
    if bool((v < 0).any()):
        raise ValueError("gini needs non-negative values")
    n = v.shape[-1]
    ordered = v.sort(dim=-1).values
    k = torch.arange(1, n + 1, dtype=v.dtype, device=v.device)
    weights = (n - k + 0.5) / n
    return 1 - 2 * (ordered / ordered.sum(-1, keepdim=True) * weights).sum(-1)


def ipr(values) -> torch.Tensor:
    """Inverse participation ratio ``sum v^4 / (sum v^2)^2`` along the last axis.

    ``values`` are amplitudes (e.g. the per-frequency norms of
    :func:`frequency_norms`), so this is the IPR (r = 2) of the normalised
    power ``v^2 / sum v^2``: 1/n when the power is spread evenly over n
    entries, 1 when it sits in one. NaN for an all-zero vector.
    """
    power = _as_float(values).pow(2)
    return power.pow(2).sum(-1) / power.sum(-1).pow(2)


@functools.lru_cache(maxsize=None)
def null_gini(n: int, d: int, *, draws: int = 4000, seed: int = 0) -> float:
    """Expected :func:`gini` of the frequency norms of a random Gaussian (p, d) matrix, n = p // 2.

    With iid N(0, s^2) entries and p odd, the orthonormal projection keeps
    the coefficients iid N(0, s^2), so each frequency's squared norm is
    ``s^2 chi^2_{2d}`` (a cosine and a sine component per column),
    independently across frequencies. The Gini index is scale-invariant, so
    its expectation depends on (n, d) only. No closed form is known for the
    expectation of this ratio, so it is a Monte Carlo mean over ``draws``
    vectors of n independent ``sqrt(chi^2_{2d})`` values from a fixed
    generator (deterministic; standard error well below 1e-3 at the
    default). For even p the Nyquist frequency has d degrees of freedom, not
    2d: a small bias this reference ignores.
    """
    if n < 1 or d < 1:
        raise ValueError(f"null_gini needs n >= 1 and d >= 1, got n={n}, d={d}")
    chi2 = np.random.default_rng(seed).standard_gamma(d, size=(draws, n))  # chi^2_{2d} / 2
    return float(gini(torch.from_numpy(np.sqrt(chi2))).mean())


def _along(T: torch.Tensor, M: torch.Tensor, dim: int) -> torch.Tensor:
    """``M`` applied along axis ``dim`` of ``T``: ``out[..., i, ...] = sum_x M[i, x] T[..., x, ...]``.

    ``T`` is viewed as (before, x, after) and multiplied as one broadcast matmul, so no axis is moved and
    nothing is copied but the result (moving the axis last and back costs more than the product itself).
    """
    T = T.contiguous()
    before, after = math.prod(T.shape[:dim]), math.prod(T.shape[dim + 1:])
    out = torch.matmul(M, T.reshape(before, T.shape[dim], after))
    return out.reshape(*T.shape[:dim], M.shape[0], *T.shape[dim + 1:])


def _transform(T, p: int, dims: Sequence[int], inverse: bool) -> torch.Tensor:
    T = _as_float(T)
    p = _check_p(p)
    dims = [d % T.dim() for d in dims]
    if len(dims) != 2 or dims[0] == dims[1] or any(T.shape[d] != p for d in dims):
        raise ValueError(f"fft2d needs two distinct axes of length p = {p}; got shape {tuple(T.shape)}, dims {dims}")
    B = fourier_basis(p, dtype=T.dtype, device=T.device)
    # forward: coefficient i = sum_x B[i, x] T[x]; inverse: T[x] = sum_i B[i, x] F[i]
    M = B.T if inverse else B
    for d in dims:
        T = _along(T, M, d)
    return T


def fft2d(T, p: int, dims: Sequence[int] = (0, 1)) -> torch.Tensor:
    """2-D real Fourier transform over the (a, b) grid: coefficients in :func:`fourier_basis` along both axes.

    Parameters
    ----------
    T : tensor with two axes of length p
        A function of (a, b) (and of any other axes), e.g. (p, p, n) or (K, p, p, n).
    p : int
    dims : pair of int
        The a and b axes (default (0, 1); the probes pass (-3, -2) for (..., p, p, n) tensors).

    Returns
    -------
    torch.Tensor, shaped like ``T``
        ``F[i, j] = sum_{a, b} B[i, a] B[j, b] T[a, b]``. The transform is
        orthonormal, so ``sum F^2 = sum T^2`` and :func:`ifft2d` inverts it exactly.
    """
    return _transform(T, p, dims, inverse=False)


def ifft2d(F, p: int, dims: Sequence[int] = (0, 1)) -> torch.Tensor:
    """Inverse of :func:`fft2d`: ``T[a, b] = sum_{i, j} B[i, a] B[j, b] F[i, j]``."""
    return _transform(F, p, dims, inverse=True)


def frequency_block_fractions(acts, p: int) -> torch.Tensor:
    """Share of each grid function's centred variance explained by each frequency (Nanda's neuron test).

    Parameters
    ----------
    acts : tensor (..., p, p, n)
        n functions of (a, b) (e.g. hidden neurons over every input pair).
    p : int

    Returns
    -------
    torch.Tensor (..., p//2, n)
        For frequency k and function f: the power of ``fft2d(f)`` in the
        block {const, cos k, sin k} x {const, cos k, sin k} less the
        const-const term (the mean, removed by centring), over the total
        power of the centred f. A function with no variance over the grid
        (a dead neuron) gets 0 for every k: it is explained by nothing.
    """
    acts = _as_float(acts)
    centred = acts - acts.mean((-3, -2), keepdim=True)
    power = fft2d(centred, p, dims=(-3, -2)).pow(2)
    # sum the power over the basis rows of each frequency, on both axes: (..., p//2+1, p//2+1, n)
    freqs = basis_frequencies(p).to(power.device)
    grouped = power
    for dim in (power.dim() - 3, power.dim() - 2):
        shape = list(grouped.shape)
        shape[dim] = n_frequencies(p) + 1
        grouped = grouped.new_zeros(shape).index_add_(dim, freqs, grouped)
    diagonal = torch.diagonal(grouped, dim1=-3, dim2=-2).movedim(-1, -2)  # (..., p//2+1, n)
    block = grouped[..., 0, 1:, :] + grouped[..., 1:, 0, :] + diagonal[..., 1:, :]
    total = power.sum((-3, -2))
    # a grid-constant function leaves only rounding after centring: treat it as no variance
    scale = acts.abs().amax((-3, -2))
    has_variance = total > (64 * torch.finfo(acts.dtype).eps * scale) ** 2 * p * p
    return torch.where(has_variance[..., None, :], block / total[..., None, :], torch.zeros_like(block))


def _grid_sum(p: int, sign: int) -> torch.Tensor:
    """s(a, b) = a + sign * b over the (a, b) grid, (p, p) float64 (a along rows)."""
    x = torch.arange(p, dtype=torch.float64)
    return x[:, None] + sign * x[None, :]


def sum_directions(p: int, freqs: Sequence[int], *, sign: int = 1, dtype=torch.float64,
                   device=None) -> torch.Tensor:
    """Unit-norm grid functions cos(w_k s) and sin(w_k s), s = a + sign * b, for the frequencies ``freqs``.

    Returns
    -------
    torch.Tensor (m, p, p)
        Orthonormal under the grid inner product ``sum_{a,b}``; for each k the
        cosine then the sine (omitted for the Nyquist frequency of even p,
        where it vanishes), so m = 2 len(freqs) for odd p.

    Notes
    -----
    In :func:`fft2d` coordinates, with sign = +1, the cosine direction is
    ``(e_{cos k, cos k} - e_{sin k, sin k}) / sqrt(2)`` and the sine
    direction ``(e_{sin k, cos k} + e_{cos k, sin k}) / sqrt(2)`` (from
    cos(x + y) = cos x cos y - sin x sin y and sin(x + y) = sin x cos y + cos x sin y;
    sign = -1 flips the sign of the sin b terms). Projecting onto these grid
    directions is therefore the same as keeping those combinations of the
    2-D DFT, as Nanda et al.'s restricted loss does.
    """
    p = _check_p(p)
    s = _grid_sum(p, sign)
    directions = []
    for k in freqs:
        if not 1 <= int(k) <= n_frequencies(p):
            raise ValueError(f"frequency {k} outside 1..{n_frequencies(p)} for p = {p}")
        for fn in (torch.cos, torch.sin):
            d = fn(2 * math.pi * int(k) * s / p)
            norm = d.norm()
            if norm > 1e-6:  # sin at the Nyquist frequency is identically 0 on the integers
                directions.append(d / norm)
    out = torch.stack(directions) if directions else torch.zeros(0, p, p, dtype=torch.float64)
    return out.to(dtype=dtype, device=device)


def key_components(logits, p: int, freqs: Sequence[int], *, sign: int = 1) -> torch.Tensor:
    """The part of each class's logit function along cos/sin(w_k (a + sign b)), k in ``freqs``.

    Parameters
    ----------
    logits : tensor (..., p, p, C)
        Logits of every (a, b) pair, C classes.
    p : int
    freqs : sequence of int
        Key frequencies.
    sign : +1 or -1
        +1 for a + b (the add circuit), -1 for a - b.

    Returns
    -------
    torch.Tensor, shaped like ``logits``
        The orthogonal projection, per class, onto :func:`sum_directions`.
        Nanda et al.'s restricted logits are ``mean over (a, b) + this``; the
        excluded logits are ``logits - this``.
    """
    logits = _as_float(logits)
    D = sum_directions(p, freqs, sign=sign, dtype=logits.dtype, device=logits.device)
    coef = torch.einsum("mab,...abc->...mc", D, logits)
    return torch.einsum("mab,...mc->...abc", D, coef)


def cos_coefficients(logits, p: int, *, sign: int = 1) -> torch.Tensor:
    """Coefficient of each unit-norm cos(w_k (a + sign b - c)) in the logit tensor, k = 1 .. p//2.

    Parameters
    ----------
    logits : tensor (..., p, p, p)
        Logit of class c for the pair (a, b), at ``[..., a, b, c]``.
    p : int
    sign : +1 or -1
        +1 for a + b, -1 for a - b.

    Returns
    -------
    torch.Tensor (..., p//2)
        ``<logits, cube_k> / ||cube_k||`` with ``cube_k[a, b, c] = cos(w_k (a + sign b - c))``
        over the whole (p, p, p) tensor: Nanda et al.'s "cos coeffs", in
        logit units times the cube's norm. A per-pair constant (softmax
        shift) does not contribute: each cube sums to 0 over c.

    Notes
    -----
    cos(w(s - c)) = cos(ws) cos(wc) + sin(ws) sin(wc), so the projection is
    two (p, p) contractions and one over c, never a (p//2, p, p, p) cube.
    Its squared norm is ``p^2 sum_c cos^2(w c)`` (for each (a, b), c -> s - c
    permutes the residues).
    """
    logits = _as_float(logits)
    p = _check_p(p)
    if logits.dim() < 3 or tuple(logits.shape[-3:]) != (p, p, p):
        raise ValueError(f"logits must be (..., p, p, p) with p = {p}, got {tuple(logits.shape)}")
    kw = dict(dtype=logits.dtype, device=logits.device)
    w = 2 * math.pi * torch.arange(1, n_frequencies(p) + 1, **kw) / p
    s = _grid_sum(p, sign).to(**kw)
    c = torch.arange(p, **kw)
    ws, wc = w[:, None, None] * s, w[:, None] * c  # (n, p, p), (n, p)
    along_cos = torch.einsum("kab,...abc->...kc", torch.cos(ws), logits)
    along_sin = torch.einsum("kab,...abc->...kc", torch.sin(ws), logits)
    coef = (along_cos * torch.cos(wc)).sum(-1) + (along_sin * torch.sin(wc)).sum(-1)
    return coef / (p * torch.cos(wc).pow(2).sum(-1).sqrt())
