"""FMGS losses against hand-computed values."""

import math

import torch

from fmgs_field.losses import (
    clip_huber_loss,
    dino_mse_loss,
    feature_loss_dict,
    neighbour_cosine_maps,
    pixel_alignment_loss,
    total_feature_loss,
)


def test_clip_huber_loss_by_hand():
    pred = torch.tensor([[0.0, 0.0], [3.0, 1.0]])
    target = torch.zeros(2, 2)
    # pixel 0: 0; pixel 1: |3| > 1.25 -> 1.25 * (3 - 0.625) = 2.96875, |1| <= 1.25 -> 0.5 * 1 = 0.5
    expected = (0.0 + 2.96875 + 0.5) / 2
    assert math.isclose(clip_huber_loss(pred, target).item(), expected, rel_tol=1e-6)
    # delta is a parameter; leading dims are pixels ([H, W, D] works the same)
    assert math.isclose(clip_huber_loss(pred[None], target[None], delta=10.0).item(), (4.5 + 0.5) / 2, rel_tol=1e-6)


def test_dino_mse_loss_by_hand_and_nan_pixels_are_ignored():
    pred = torch.tensor([[1.0, 2.0], [0.0, 0.0], [5.0, 5.0]])
    target = torch.tensor([[0.0, 0.0], [0.0, 0.0], [float("nan"), 0.0]])
    # sums over channels: 5, 0, NaN -> nanmean = 2.5
    assert math.isclose(dino_mse_loss(pred, target).item(), 2.5, rel_tol=1e-6)
    all_nan = torch.full((2, 2), float("nan"))
    assert dino_mse_loss(pred[:2], all_nan).item() == 0.0
    assert clip_huber_loss(pred[:2], all_nan).item() == 0.0


def test_neighbour_cosine_maps_and_pixel_alignment_by_hand():
    # DINO: column 0 holds e1, column 1 holds e2 (2 x 2 map). With reflect padding, index -1 -> 1 and 2 -> 0, so
    # every pixel's 2 vertical neighbours share its column (cos 1) and its 6 others lie in the other column (cos 0).
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    dino = torch.stack([torch.stack([e1, e2]), torch.stack([e1, e2])])  # [2, 2, 2]
    cos = neighbour_cosine_maps(dino)
    assert cos.shape == (2, 2, 8)
    # offsets in row-major order without (0, 0): index 1 is (-1, 0) and index 6 is (1, 0)
    expected = torch.zeros(8)
    expected[1] = expected[6] = 1.0
    for i in range(2):
        for j in range(2):
            torch.testing.assert_close(cos[i, j], expected)
    # CLIP: a constant map has all cosines 1 -> L1 = 6 / 8 per pixel
    clip = torch.ones(2, 2, 4, requires_grad=True)
    dino = dino.clone().requires_grad_(True)
    loss = pixel_alignment_loss(clip, dino)
    assert math.isclose(loss.item(), 0.75, rel_tol=1e-6)
    loss.backward()
    assert dino.grad is None  # DINO is the detached reference
    assert clip.grad is not None


def test_pixel_alignment_is_zero_for_identical_structure():
    torch.manual_seed(0)
    base = torch.randn(6, 7, 5)
    assert pixel_alignment_loss(base * 3.0, base).item() < 1e-6  # cosines ignore scale


def test_total_and_dict_by_hand():
    c, d, a = torch.tensor(2.0), torch.tensor(1.0), torch.tensor(4.0)
    assert math.isclose(total_feature_loss(c, d).item(), 0.8 * 1.0 + 0.2 * 2.0, rel_tol=1e-6)
    assert math.isclose(total_feature_loss(c, d, a).item(), 0.8 + 0.4 + 0.04, rel_tol=1e-6)
    assert math.isclose(total_feature_loss(c, d, a, alignment_weight=0.0).item(), 1.2, rel_tol=1e-6)

    torch.manual_seed(1)
    rc, rd = torch.randn(5, 6, 8), torch.randn(5, 6, 4)
    tc, td = torch.randn(5, 6, 8), torch.randn(5, 6, 4)
    terms = feature_loss_dict(rc, rd, tc, td)
    assert set(terms) == {"clip_loss", "dino_loss", "pixel_alignment_loss"}
    expected = total_feature_loss(clip_huber_loss(rc, tc), dino_mse_loss(rd, td), pixel_alignment_loss(rc, rd))
    torch.testing.assert_close(sum(terms.values()), expected)
    assert "pixel_alignment_loss" not in feature_loss_dict(rc, rd, tc, td, alignment_weight=0.0)
