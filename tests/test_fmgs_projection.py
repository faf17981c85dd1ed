"""Relevancy from rendered basis coefficients equals relevancy from the full feature map."""

import pytest
import torch

from fmgs_field.projection import feature_basis, projected_relevancy
from fmgs_field.relevancy import relevancy


def _low_rank(n: int, d: int, rank: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, rank, generator=g) @ torch.randn(rank, d, generator=g)


def test_basis_spans_low_rank_features_exactly():
    features = torch.nn.functional.normalize(_low_rank(500, 64, 7), dim=-1)  # unit rows, as the CLIP head's
    basis = feature_basis(features)
    assert basis.shape == (64, 7)
    assert torch.allclose(basis.T @ basis, torch.eye(7), atol=1e-5)
    assert torch.allclose(features @ basis @ basis.T, features, atol=1e-5)


def test_basis_drops_weak_directions_by_energy():
    g = torch.Generator().manual_seed(1)
    strong = _low_rank(400, 32, 3, seed=2)
    weak = 1e-3 * torch.randn(400, 32, generator=g)  # full rank, energy ~1e-6 of the strong part
    features = strong + weak
    assert feature_basis(features, rel_tol=1e-4).shape[1] == 3
    assert feature_basis(features, rel_tol=0.0).shape[1] == 32
    assert feature_basis(features, rel_tol=1e-4, max_dim=2).shape[1] == 2
    assert feature_basis(features, rel_tol=10.0).shape[1] == 1  # always at least one direction


@pytest.mark.parametrize("bad", [torch.zeros(0, 8), torch.zeros(8)])
def test_basis_rejects_bad_input(bad):
    with pytest.raises(ValueError, match="N, D"):
        feature_basis(bad)


def test_projected_relevancy_matches_full_relevancy():
    """Rendered features are alpha-weighted sums of per-Gaussian features; coefficients composite the same way."""
    per_gaussian = torch.nn.functional.normalize(_low_rank(300, 48, 9, seed=3), dim=-1)
    weights = torch.rand(5, 7, 300) * (torch.rand(5, 7, 300) < 0.05)  # [h, w, N], sparse "alpha x transmittance"
    rendered = weights @ per_gaussian  # [h, w, D]
    basis = feature_basis(per_gaussian)
    coefficients = weights @ (per_gaussian @ basis)  # what the rasteriser outputs for k channels
    g = torch.Generator().manual_seed(4)
    positives, negatives = 3 * torch.randn(2, 48, generator=g), torch.randn(4, 48, generator=g)
    expected = relevancy(rendered, positives, negatives)
    got = projected_relevancy(coefficients, basis, positives, negatives)
    assert got.shape == (5, 7, 2)
    assert torch.allclose(got, expected, atol=1e-5)
