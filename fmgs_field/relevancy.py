"""LERF relevancy of CLIP features to text queries against canonical negatives.

Follows ``OpenCLIPNetwork.get_relevancy`` (LERF's lerf/encoders/openclip_encoder.py; the same code in FMGS's
``lerf/encoders/openclip_encoder.py`` and LangSplat's ``eval/openclip_encoder.py``): for a positive phrase and each
negative phrase, softmax over ``temperature * [cos(f, pos), cos(f, neg_m)]``; the relevancy is the positive probability
of the negative that scores worst for the positive, ``min_m softmax(...)[0]``. With two entries that softmax equals
``sigmoid(temperature * (cos_pos - cos_neg_m))``, so the minimum picks the negative closest to ``f``.

LERF uses the embeddings as given (all unit norm there); here every input is L2-normalised first, so the scores are
cosines whatever the feature scale.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

CANONICAL_NEGATIVES: Tuple[str, ...] = ("object", "things", "stuff", "texture")
"""LERF's canonical negative phrases (``OpenCLIPNetworkConfig.negatives`` in LERF and FMGS)."""

RELEVANCY_TEMPERATURE = 10.0
"""Multiplier of the cosines before the softmax (``torch.softmax(10 * sims)`` in LERF)."""


def relevancy(
    features: Float[Tensor, "*bs D"],
    positives: Float[Tensor, "P D"],
    negatives: Float[Tensor, "M D"],
    temperature: float = RELEVANCY_TEMPERATURE,
) -> Float[Tensor, "*bs P"]:
    """LERF relevancy of each feature to each positive phrase embedding.

    Args:
        features: CLIP features (rendered or teacher); need not be unit norm. [..., D]
        positives: Text embeddings of the queries. [P, D]
        negatives: Text embeddings of the canonical negatives. [M, D]
        temperature: Softmax temperature multiplier (10).

    Returns:
        ``min_m softmax(temperature * [cos(f, p), cos(f, n_m)])[0]`` per positive, in (0, 1). [..., P]
    """
    f = F.normalize(features.float(), dim=-1)
    pos = F.normalize(positives.to(f), dim=-1)
    neg = F.normalize(negatives.to(f), dim=-1)
    return relevancy_from_cosines(f @ pos.T, f @ neg.T, temperature)


def relevancy_from_cosines(
    cos_pos: Float[Tensor, "*bs P"],
    cos_neg: Float[Tensor, "*bs M"],
    temperature: float = RELEVANCY_TEMPERATURE,
) -> Float[Tensor, "*bs P"]:
    """:func:`relevancy` from the cosines of the features with the positive and negative embeddings.

    Args:
        cos_pos: Cosine of each feature with each positive. [..., P]
        cos_neg: Cosine of each feature with each negative. [..., M]
        temperature: Softmax temperature multiplier (10).

    Returns:
        ``min_m softmax(temperature * [cos_pos, cos_neg_m])[0]`` per positive, in (0, 1). [..., P]
    """
    sims = torch.stack(torch.broadcast_tensors(cos_pos[..., :, None], cos_neg[..., None, :]), dim=-1)  # [..., P, M, 2]
    probs = torch.softmax(temperature * sims, dim=-1)[..., 0]  # [..., P, M]
    return probs.min(dim=-1).values
