"""Query-time relevancy from a few rendered channels instead of the full CLIP feature map.

Relevancy needs, per pixel, the cosines of the rendered CLIP feature ``f = sum_i w_i f_i`` with a handful of text
embeddings. Those depend on ``f`` only through its projection on the span of the per-Gaussian features ``f_i``; the
field's CLIP head ends in a linear layer from ``hidden_width`` units, so that span has at most ``hidden_width + 1``
dimensions, and a trained field uses far fewer. With an orthonormal basis ``B`` [D, k] of the span (eigenvectors of
``F^T F``), rendering the coefficients ``c_i = B^T f_i`` (k channels) gives ``B^T f`` exactly, hence
``f . t = (B^T f) . (B^T t)`` and ``|f| = |B^T f|`` for any text embedding ``t``, up to the energy of the discarded
directions (``rel_tol``). Alpha compositing is linear in the colours, which is what makes this exact.

This is our own: LangSplat and LERF render a fixed low-dimensional (autoencoder) or full feature and do not bound the
error; FMGS renders all 512 channels.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from fmgs_field.relevancy import RELEVANCY_TEMPERATURE, relevancy_from_cosines


def feature_basis(
    features: Float[Tensor, "N D"], rel_tol: float = 1e-6, chunk_size: int = 1 << 16, max_dim: Optional[int] = None
) -> Float[Tensor, "D k"]:
    """Orthonormal basis of the span of ``features``, largest directions first, dropping the weakest directions
    whose summed energy is at most ``rel_tol`` of the total.

    Args:
        features: Per-Gaussian features, any norm. [N, D]
        rel_tol: Discarded energy ``sum_{j>k} s_j^2`` relative to ``sum_j s_j^2`` (``s_j`` singular values of
            ``features``); 0 keeps every direction with non-zero energy.
        chunk_size: Rows accumulated into the float64 Gram matrix at a time (bounds memory for millions of rows).
        max_dim: Keep at most this many directions (None: as many as ``rel_tol`` needs).

    Returns:
        ``B`` with ``B^T B = I``, in the dtype and on the device of ``features``; at least one column. [D, k]

    Raises:
        ValueError: ``features`` is not a non-empty 2-D tensor or ``rel_tol`` is negative.
    """
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"feature_basis needs [N, D] features with N > 0, got {tuple(features.shape)}")
    if rel_tol < 0:
        raise ValueError(f"rel_tol must be >= 0, got {rel_tol}")
    gram = torch.zeros(features.shape[1], features.shape[1], dtype=torch.float64, device=features.device)
    for chunk in torch.split(features, chunk_size):
        c = chunk.double()
        gram += c.T @ c
    energy, vectors = torch.linalg.eigh(gram)  # ascending
    energy, vectors = energy.flip(0).clamp_min(0.0), vectors.flip(1)
    total = energy.sum()
    discarded = total - torch.cumsum(energy, 0)  # energy left out when keeping the first j + 1 directions
    k = int((discarded > rel_tol * total).sum().item()) + 1
    if max_dim is not None:
        k = min(k, max_dim)
    return vectors[:, :k].to(features.dtype)


def projected_relevancy(
    coefficients: Float[Tensor, "*bs k"],
    basis: Float[Tensor, "D k"],
    positives: Float[Tensor, "P D"],
    negatives: Float[Tensor, "M D"],
    temperature: float = RELEVANCY_TEMPERATURE,
) -> Float[Tensor, "*bs P"]:
    """LERF relevancy (:func:`fmgs_field.relevancy.relevancy`) of features given by their coefficients in ``basis``.

    Args:
        coefficients: ``B^T f`` per pixel, e.g. the rendered coefficients of :func:`feature_basis`. [..., k]
        basis: Orthonormal basis ``B`` of the features' span. [D, k]
        positives: Text embeddings of the queries, any norm. [P, D]
        negatives: Text embeddings of the negatives, any norm. [M, D]
        temperature: Softmax temperature multiplier (10).

    Returns:
        Relevancy per positive in (0, 1); equal to ``relevancy(B @ c, positives, negatives)``. [..., P]
    """
    c = coefficients.float()
    b = basis.to(c)
    pos = F.normalize(positives.to(c), dim=-1) @ b  # [P, k]: B^T t of the unit text embeddings
    neg = F.normalize(negatives.to(c), dim=-1) @ b
    norm = c.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # F.normalize's eps
    return relevancy_from_cosines((c @ pos.T) / norm, (c @ neg.T) / norm, temperature)


__all__ = ["feature_basis", "projected_relevancy"]
