"""LERF relevancy: a hand-computed case and LERF's gather-based reference on random inputs."""

import math

import torch

from fmgs_field.relevancy import CANONICAL_NEGATIVES, relevancy


def _lerf_get_relevancy(embed, pos_embeds, neg_embeds, positive_id):
    """LERF's OpenCLIPNetwork.get_relevancy (LERF's lerf/encoders/openclip_encoder.py), rewritten as a reference."""
    phrases = torch.cat([pos_embeds, neg_embeds], dim=0)
    output = embed @ phrases.T
    positive_vals = output[..., positive_id : positive_id + 1]
    negative_vals = output[..., len(pos_embeds) :]
    repeated_pos = positive_vals.repeat(1, len(neg_embeds))
    sims = torch.stack((repeated_pos, negative_vals), dim=-1)
    softmax = torch.softmax(10 * sims, dim=-1)
    best_id = softmax[..., 0].argmin(dim=1)
    gathered = torch.gather(softmax, 1, best_id[..., None, None].expand(best_id.shape[0], len(neg_embeds), 2))
    return gathered[:, 0, :]


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def test_canonical_negatives():
    assert CANONICAL_NEGATIVES == ("object", "things", "stuff", "texture")


def test_relevancy_by_hand():
    f = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # second feature not unit norm: cosines are used
    pos = torch.tensor([[1.0, 0.0]])
    neg = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    r = relevancy(f, pos, neg)
    assert r.shape == (2, 1)
    c = 1 / math.sqrt(2)
    # f0: cos_pos 1, cos_neg (0, c): softmax(10 [1, x])[0] = sigmoid(10 (1 - x)); min over negatives -> x = c
    assert math.isclose(r[0, 0].item(), _sigmoid(10 * (1 - c)), rel_tol=1e-6)
    # f1: cos_pos 0, cos_neg (1, c) -> sigmoid(-10)
    assert math.isclose(r[1, 0].item(), _sigmoid(-10.0), rel_tol=1e-5)
    # temperature 1
    assert math.isclose(relevancy(f[:1], pos, neg, temperature=1.0)[0, 0].item(), _sigmoid(1 - c), rel_tol=1e-6)


def test_relevancy_matches_lerf_reference_and_keeps_batch_dims():
    torch.manual_seed(0)
    feats = torch.nn.functional.normalize(torch.randn(2, 3, 16), dim=-1)
    pos = torch.nn.functional.normalize(torch.randn(3, 16), dim=-1)
    neg = torch.nn.functional.normalize(torch.randn(4, 16), dim=-1)
    r = relevancy(feats, pos, neg)
    assert r.shape == (2, 3, 3)
    flat = feats.reshape(-1, 16)
    for j in range(3):
        ref = _lerf_get_relevancy(flat, pos, neg, j)[:, 0].reshape(2, 3)
        torch.testing.assert_close(r[..., j], ref)
    assert (r > 0).all() and (r < 1).all()
