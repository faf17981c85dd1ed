"""Tests for splat_core.rendering.footprint against a slow per-Gaussian reference kept here."""

import pytest
import torch

from splat_core.rendering.footprint import count_in_footprints, footprint_area, footprint_bounds


def _slow_count(means2d, radii, masks, radius_scale=1.0):
    """Reference: loop over views and Gaussians, test every pixel centre against the box."""
    C, H, W = masks.shape
    N = means2d.shape[1]
    rad = radii.double()
    if rad.dim() == 2:
        rad = rad[..., None].expand(C, N, 2)
    cols = torch.arange(W, dtype=torch.float64) + 0.5
    rows = torch.arange(H, dtype=torch.float64) + 0.5
    out = torch.zeros(C, N, dtype=torch.float64)
    for c in range(C):
        for i in range(N):
            rx, ry = rad[c, i, 0].item(), rad[c, i, 1].item()
            if rx <= 0 or ry <= 0:
                continue
            rx, ry = rx * radius_scale, ry * radius_scale
            mx, my = means2d[c, i, 0].double().item(), means2d[c, i, 1].double().item()
            inside = ((rows[:, None] - my).abs() <= ry) & ((cols[None, :] - mx).abs() <= rx)
            out[c, i] = masks[c].double()[inside].sum()
    return out


def _random_case(C=3, N=60, H=23, W=31, per_axis=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    means2d = torch.rand(C, N, 2, generator=g) * torch.tensor([W + 20.0, H + 20.0]) - 10.0  # some off-image
    means2d[:, :10] = torch.floor(means2d[:, :10]) + 0.5  # centres on pixel centres: boundaries hit exactly
    shape = (C, N, 2) if per_axis else (C, N)
    radii = torch.randint(0, 9, shape, generator=g, dtype=torch.int32)
    radii[:, :5] = 0  # culled
    return means2d, radii


@pytest.mark.parametrize("per_axis", [False, True], ids=["gsplat1.4_radii", "gsplat1.5_radii"])
@pytest.mark.parametrize("mask_kind", ["bool", "float"])
def test_count_matches_slow_loop(per_axis, mask_kind):
    C, N, H, W = 3, 60, 23, 31
    means2d, radii = _random_case(C, N, H, W, per_axis)
    g = torch.Generator().manual_seed(1)
    masks = torch.rand(C, H, W, generator=g)
    masks = masks > 0.6 if mask_kind == "bool" else masks
    got = count_in_footprints(means2d, radii, masks)
    assert got.shape == (C, N) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), _slow_count(means2d, radii, masks), rtol=1e-5, atol=1e-4)
    assert (got[:, :5] == 0).all()  # radius 0: nothing counted


def test_radius_scale_matches_slow_loop():
    means2d, radii = _random_case(per_axis=True, seed=3)
    masks = torch.ones(3, 23, 31, dtype=torch.bool)
    got = count_in_footprints(means2d, radii, masks, radius_scale=0.5)
    torch.testing.assert_close(got.double(), _slow_count(means2d, radii, masks, 0.5), rtol=0, atol=0)


@pytest.mark.parametrize("per_axis", [False, True])
def test_area_is_count_of_ones(per_axis):
    C, N, H, W = 3, 60, 23, 31
    means2d, radii = _random_case(C, N, H, W, per_axis, seed=5)
    area = footprint_area(means2d, radii, W, H)
    ones = torch.ones(C, H, W, dtype=torch.bool)
    torch.testing.assert_close(area, count_in_footprints(means2d, radii, ones), rtol=0, atol=0)
    torch.testing.assert_close(area.double(), _slow_count(means2d, radii, ones), rtol=0, atol=0)


def test_hand_cases():
    H, W = 10, 12
    means2d = torch.tensor(
        [
            [5.5, 4.5],  # centred on pixel (5, 4): radius 2 -> columns 3..7, rows 2..6 -> 25 pixels
            [0.2, 0.2],  # corner: centres 0.5, 1.5 lie in [-1.8, 2.2] -> 2 x 2 pixels
            [-30.0, 5.0],  # off image
            [6.0, 5.0],  # radius 0: culled
            [6.0, 5.0],  # per-axis radii (1, 0) in the 1.5 format are culled as well
        ]
    )[None]
    radii = torch.tensor([[[2, 2], [2, 2], [3, 3], [0, 0], [1, 0]]], dtype=torch.int32)
    assert footprint_area(means2d, radii, W, H).tolist() == [[25.0, 4.0, 0.0, 0.0, 0.0]]
    x0, x1, y0, y1 = footprint_bounds(means2d, radii, W, H)
    assert (x0[0, 0].item(), x1[0, 0].item(), y0[0, 0].item(), y1[0, 0].item()) == (3, 7, 2, 6)
    mask = torch.zeros(1, H, W)
    mask[0, 4, 5] = 2.5  # weights are summed
    mask[0, 0, 0] = 1.0
    assert count_in_footprints(means2d, radii, mask).tolist() == [[2.5, 1.0, 0.0, 0.0, 0.0]]


def test_large_counts_are_exact():
    H, W = 512, 640
    means2d = torch.tensor([[[320.0, 256.0], [100.25, 50.75]]])
    radii = torch.tensor([[1000, 40]], dtype=torch.int32)
    masks = torch.ones(1, H, W, dtype=torch.bool)
    got = count_in_footprints(means2d, radii, masks)
    assert got[0, 0].item() == H * W
    assert got[0, 1].item() == footprint_area(means2d, radii, W, H)[0, 1].item()


def test_shape_errors():
    means2d = torch.zeros(2, 4, 2)
    with pytest.raises(ValueError):
        count_in_footprints(means2d, torch.ones(2, 5, dtype=torch.int32), torch.ones(2, 8, 8))
    with pytest.raises(ValueError):
        count_in_footprints(means2d, torch.ones(2, 4, dtype=torch.int32), torch.ones(3, 8, 8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="No CUDA device")
def test_cuda_matches_cpu():
    means2d, radii = _random_case(per_axis=True, seed=7)
    masks = torch.rand(3, 23, 31) > 0.5
    cpu = count_in_footprints(means2d, radii, masks)
    gpu = count_in_footprints(means2d.cuda(), radii.cuda(), masks.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=0)
