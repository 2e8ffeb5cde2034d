"""The authors' Fig. 10 estimator (pinnkit.book.power_iteration), checked against the dense eigensolver."""
from __future__ import annotations

import math

import pytest
import torch

from pinnkit.book.power_iteration import deflated_power_iteration, with_spectrum


@pytest.fixture(autouse=True)
def one_thread():
    """Thousands of 129 x 129 products: one thread (as the chapters run) is faster than several."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_with_spectrum_has_the_given_eigenvalues():
    lam = torch.tensor([5.0, -1.0, 0.5, 1e-3], dtype=torch.float64)
    H = with_spectrum(lam, seed=3)
    assert torch.allclose(H, H.T)
    assert torch.allclose(torch.linalg.eigvalsh(H), lam.sort().values, atol=1e-12)


def test_top_eigenvalues_of_a_separated_spectrum_match_eigvalsh():
    """Where power iteration works (a well-separated top), it finds the top values to about the tolerance."""
    lam = torch.tensor([100.0, 30.0, 9.0, 2.7, 0.8, 0.2, 0.05, 0.01], dtype=torch.float64)
    H = with_spectrum(lam, seed=0)
    r = deflated_power_iteration(H, top_n=3, tol=1e-6, max_iter=2000, dtype=torch.float64)
    assert torch.allclose(r.eigenvalues, lam[:3], rtol=1e-4)
    assert r.vectors.shape == (3, 8) and r.iterations.shape == (3,)
    assert r.ratio == pytest.approx(100.0 / 9.0, rel=1e-3)


def test_matrix_free_operator_gives_the_same_answer():
    lam = torch.tensor([4.0, 2.0, 1.0, 0.5], dtype=torch.float64)
    H = with_spectrum(lam, seed=1).float()
    a = deflated_power_iteration(H, top_n=2, seed=5)
    b = deflated_power_iteration(lambda v: H @ v, dim=4, top_n=2, seed=5)
    assert torch.equal(a.eigenvalues, b.eigenvalues)


@pytest.mark.parametrize("kappa", [1e3, 1e9])
def test_the_authors_settings_report_a_floor_not_the_condition_number(kappa):
    """top_n = 129, tol 1e-3, float32: the last value is nowhere near the smallest eigenvalue, and the ratio stays
    below 1e3 whatever the true condition number (the defect the book shows in Figure 10)."""
    lam = 1e3 * torch.logspace(0, -math.log10(kappa), 129, dtype=torch.float64)
    r = deflated_power_iteration(with_spectrum(lam, seed=0), top_n=129, tol=1e-3, max_iter=500, seed=0)
    assert r.eigenvalues[0] == pytest.approx(1e3, rel=0.05)      # the top is right
    assert 10 < r.ratio < 1e3                                     # ... the bottom is the floor
    if kappa >= 1e6:
        assert r.ratio < 1e-3 * kappa


def test_errors_name_the_fix():
    with pytest.raises(ValueError, match="top_n"):
        deflated_power_iteration(torch.eye(3), top_n=4)
    with pytest.raises(ValueError, match="dim="):
        deflated_power_iteration(lambda v: v, top_n=1)
