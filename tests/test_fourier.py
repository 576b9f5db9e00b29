"""Known answers of the Fourier toolkit (grokking_theories.probes.fourier)."""
import math

import pytest
import torch

from grokking_theories.probes.fourier import (basis_frequencies, basis_labels, cos_coefficients, fft2d,
                                              fourier_basis, frequency_block_fractions, frequency_norms, gini,
                                              ifft2d, ipr, key_components, n_frequencies, null_gini,
                                              sum_directions)


def _wave(fn, k, p, x):
    return fn(2 * math.pi * k * torch.as_tensor(x, dtype=torch.float64) / p)


def _grid(p):
    x = torch.arange(p, dtype=torch.float64)
    return x[:, None], x[None, :]


@pytest.mark.parametrize("p", [2, 3, 4, 7, 10, 23, 113])
def test_basis_is_orthonormal_with_labelled_rows(p):
    B = fourier_basis(p)
    eye = torch.eye(p, dtype=torch.float64)
    torch.testing.assert_close(B @ B.T, eye, atol=1e-12, rtol=0)
    torch.testing.assert_close(B.T @ B, eye, atol=1e-12, rtol=0)
    labels, freqs = basis_labels(p), basis_frequencies(p)
    assert len(labels) == len(freqs) == p and labels[0] == "const" and freqs[0] == 0
    assert int(freqs.max()) == n_frequencies(p) == p // 2
    x = torch.arange(p)
    torch.testing.assert_close(B[0], torch.full((p,), p ** -0.5, dtype=torch.float64))
    if p >= 3:  # row 1 is cos 1, row 2 sin 1, both scaled by sqrt(2/p)
        assert labels[1:3] == ["cos 1", "sin 1"]
        torch.testing.assert_close(B[2], _wave(torch.sin, 1, p, x) * math.sqrt(2 / p))
    if p % 2 == 0:  # the Nyquist frequency has a cosine only
        assert labels[-1] == f"cos {p // 2}" and (freqs == p // 2).sum() == 1


def test_bad_modulus_raises():
    for p in (1, 0, 2.5, True):
        with pytest.raises(ValueError):
            fourier_basis(p)


def test_frequency_norms_of_a_planted_frequency():
    p, k0 = 23, 5
    a = torch.arange(p)
    W = torch.stack([_wave(torch.cos, k0, p, a), _wave(torch.sin, k0, p, a), 3 * _wave(torch.cos, k0, p, a + 2)], 1)
    norms = frequency_norms(W, p)
    assert norms.shape == (n_frequencies(p),)
    expected = torch.zeros(n_frequencies(p), dtype=torch.float64)
    expected[k0 - 1] = W.norm()  # no constant part: every bit of the norm sits at k0
    torch.testing.assert_close(norms, expected, atol=1e-12, rtol=1e-12)
    with_dc = frequency_norms(W + 2.0, p, include_constant=True)
    torch.testing.assert_close(with_dc[0], torch.tensor(2.0 * math.sqrt(p) * math.sqrt(3), dtype=torch.float64))
    torch.testing.assert_close(with_dc[1:], expected, atol=1e-12, rtol=1e-12)


def test_frequency_norms_are_batched_and_keep_the_frobenius_norm():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(4, 3, 11, 6, generator=g, dtype=torch.float64)
    norms = frequency_norms(W, 11, include_constant=True)
    assert norms.shape == (4, 3, 6)
    torch.testing.assert_close(norms.pow(2).sum(-1), W.pow(2).sum((-2, -1)))
    torch.testing.assert_close(norms[2, 1], frequency_norms(W[2, 1], 11, include_constant=True))
    with pytest.raises(ValueError):
        frequency_norms(W, 13)


def test_gini_known_values():
    n = 7
    assert float(gini(torch.ones(n, dtype=torch.float64))) == pytest.approx(0.0, abs=1e-12)
    assert float(gini(torch.ones(n))) == pytest.approx(0.0, abs=1e-6)  # float32 in, float32 arithmetic
    one_hot = torch.zeros(n)
    one_hot[3] = 2.5
    assert float(gini(one_hot)) == pytest.approx((n - 1) / n)  # Hurley & Rickard's maximum, 1 - 1/n
    two = torch.tensor([0.0, 4.0, 0.0, 4.0, 0.0])
    assert float(gini(two)) == pytest.approx(1 - 2 / 5)  # m equal non-zero values of n: 1 - m/n
    assert float(gini(torch.tensor([1.0, 2.0, 3.0, 4.0]))) == pytest.approx(0.25)
    assert torch.isnan(gini(torch.zeros(3)))
    with pytest.raises(ValueError):
        gini(torch.tensor([1.0, -1.0]))


def test_gini_equals_the_mean_absolute_difference_form_batched_and_scale_free():
    g = torch.Generator().manual_seed(1)
    v = torch.rand(5, 9, generator=g, dtype=torch.float64)
    # for sorted-weight Gini (Hurley & Rickard) = sum_ij |x_i - x_j| / (2 n^2 mean)
    mad = (v[:, :, None] - v[:, None, :]).abs().sum((1, 2)) / (2 * 9 ** 2 * v.mean(-1))
    torch.testing.assert_close(gini(v), mad)
    torch.testing.assert_close(gini(7.0 * v), gini(v))


def test_ipr_uniform_and_single():
    n = 8
    assert float(ipr(torch.full((n,), 3.0))) == pytest.approx(1 / n)
    single = torch.zeros(n)
    single[0] = 0.3
    assert float(ipr(single)) == pytest.approx(1.0)
    torch.testing.assert_close(ipr(torch.ones(2, 4)), torch.full((2,), 0.25))


def test_random_gaussian_weights_have_the_null_gini():
    """Gaussian matrices through the basis give the Gini that null_gini computes from chi variables."""
    p, d, draws = 23, 8, 600
    g = torch.Generator().manual_seed(2)
    ginis = gini(frequency_norms(torch.randn(draws, p, d, generator=g, dtype=torch.float64), p))
    reference = null_gini(n_frequencies(p), d)
    se = float(ginis.std()) / math.sqrt(draws)
    assert abs(float(ginis.mean()) - reference) < 4 * se
    assert 0 < reference < 0.5 and null_gini(n_frequencies(p), d) == reference  # deterministic
    assert null_gini(11, 256) < reference  # more columns per frequency -> flatter spectrum


@pytest.mark.parametrize("shape,dims", [((7, 7), (0, 1)), ((7, 7, 3), (0, 1)), ((2, 7, 7, 3), (-3, -2)),
                                         ((7, 4, 7), (0, 2))])
def test_fft2d_round_trips_and_keeps_the_norm(shape, dims):
    g = torch.Generator().manual_seed(3)
    T = torch.randn(shape, generator=g, dtype=torch.float64)
    F = fft2d(T, 7, dims=dims)
    torch.testing.assert_close(ifft2d(F, 7, dims=dims), T, atol=1e-12, rtol=0)
    torch.testing.assert_close(F.pow(2).sum(), T.pow(2).sum())


def test_fft2d_of_a_product_is_the_outer_product_of_1d_transforms():
    p = 11
    g = torch.Generator().manual_seed(4)
    f, h = torch.randn(p, generator=g, dtype=torch.float64), torch.randn(p, generator=g, dtype=torch.float64)
    B = fourier_basis(p)
    torch.testing.assert_close(fft2d(torch.outer(f, h), p), torch.outer(B @ f, B @ h))
    with pytest.raises(ValueError):
        fft2d(torch.zeros(p, p + 1), p)


@pytest.mark.parametrize("sign", [1, -1])
def test_sum_directions_are_the_2d_dft_combinations(sign):
    """cos(w(a + s b)) = cos a cos b - s sin a sin b, sin(w(a + s b)) = sin a cos b + s cos a sin b."""
    p, k = 13, 4
    D = sum_directions(p, [k, 6], sign=sign)
    assert D.shape == (4, p, p)
    torch.testing.assert_close(torch.einsum("mab,nab->mn", D, D), torch.eye(4, dtype=torch.float64))
    F = fft2d(D[0], p)
    c, s = 2 * k - 1, 2 * k  # rows cos k and sin k
    expected = torch.zeros(p, p, dtype=torch.float64)
    expected[c, c], expected[s, s] = 2 ** -0.5, -sign * 2 ** -0.5
    torch.testing.assert_close(F, expected, atol=1e-12, rtol=0)
    expected = torch.zeros(p, p, dtype=torch.float64)
    expected[s, c], expected[c, s] = 2 ** -0.5, sign * 2 ** -0.5
    torch.testing.assert_close(fft2d(D[1], p), expected, atol=1e-12, rtol=0)
    assert sum_directions(10, [5]).shape == (1, 10, 10)  # the Nyquist sine vanishes


def test_key_components_keep_exactly_the_key_sum_terms():
    p = 11
    a, b = _grid(p)
    c = torch.arange(p, dtype=torch.float64)
    w = lambda k: 2 * math.pi * k / p  # noqa: E731
    key = 3 * torch.cos(w(2) * (a + b)[..., None] - w(2) * c)  # a key-frequency a+b term, every class
    other = torch.cos(w(2) * (a - b))[..., None] * torch.cos(w(1) * c) + torch.sin(w(4) * (a + b))[..., None] * c
    logits = key + other + 5.0
    part = key_components(logits, p, [2])
    torch.testing.assert_close(part, key, atol=1e-12, rtol=0)
    torch.testing.assert_close(key_components(logits[None].expand(3, p, p, p), p, [2]), part[None].expand(3, p, p, p))


def test_cos_coefficients_of_a_planted_logit_cube():
    p = 13
    a, b = _grid(p)
    c = torch.arange(p, dtype=torch.float64)
    for sign in (1, -1):
        s = (a + sign * b)[..., None]
        cube = lambda k: torch.cos(2 * math.pi * k * (s - c) / p)  # noqa: E731
        logits = 2.0 * cube(5) - 0.5 * cube(2) + 7.0 * a[..., None]  # a per-pair shift changes nothing
        coefs = cos_coefficients(logits, p, sign=sign)
        expected = torch.zeros(n_frequencies(p), dtype=torch.float64)
        expected[4], expected[1] = 2.0 * cube(5).norm(), -0.5 * cube(2).norm()
        torch.testing.assert_close(coefs, expected, atol=1e-10, rtol=1e-12)
    assert cos_coefficients(torch.zeros(4, p, p, p), p).shape == (4, n_frequencies(p))


def test_frequency_block_fractions():
    p = 11
    a, b = _grid(p)
    w = lambda k, x: 2 * math.pi * k * x / p  # noqa: E731
    single = torch.cos(w(3, a)) + 2 * torch.sin(w(3, b)) + torch.cos(w(3, a)) * torch.sin(w(3, b)) + 4.0
    split = torch.cos(w(3, a)) + torch.cos(w(5, b)) + 0 * b  # half its variance at k = 3, half at k = 5
    harmonic = torch.cos(w(2, a + b)) + torch.cos(w(4, a)) + 0 * b  # 2k is not in k's block
    constant = torch.full((p, p), 2.0, dtype=torch.float64)
    acts = torch.stack([single, split, harmonic, constant], -1)
    fr = frequency_block_fractions(acts, p)
    assert fr.shape == (n_frequencies(p), 4)
    torch.testing.assert_close(fr[:, 0], torch.eye(5, dtype=torch.float64)[2])
    assert float(fr[2, 1]) == pytest.approx(0.5) and float(fr[4, 1]) == pytest.approx(0.5)
    assert float(fr[1, 2]) == pytest.approx(0.5) and float(fr[3, 2]) == pytest.approx(0.5)
    assert torch.all(fr[:, 3] == 0)
    torch.testing.assert_close(frequency_block_fractions(acts[None].expand(2, p, p, 4), p)[1], fr)
