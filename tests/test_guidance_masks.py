"""Image masks to per-Gaussian guidance (gaussian_masks.py) and the phase rule (mask_rule.py), against slow
per-Gaussian loops kept here."""

import math

import pytest
import torch

from splat_core.rendering.views import RenderedView
from vlm_instruct_gs.guidance.boxes import Box
from vlm_instruct_gs.guidance.gaussian_masks import (
    combine_views,
    footprint_fractions,
    in_front_of_surface,
    regions_to_guidance,
)
from vlm_instruct_gs.guidance.mask_rule import PhaseRegions, is_floater, region_masks


def _views(means2d, radii, densify=None, floaters=None, depths=None, surface=10.0):
    """One (RenderedView, PhaseRegions) pair per view of [V, N, 2] centres, masks [V, H, W] (or None)."""
    V = means2d.shape[0]
    H, W = (densify if densify is not None else floaters).shape[-2:]
    depths = torch.full(means2d.shape[:2], 5.0) if depths is None else depths
    return [
        (RenderedView(rgb=torch.zeros(H, W, 3), depth=torch.full((H, W), surface), alpha=torch.ones(H, W),
                      means2d=means2d[v : v + 1], radii=radii[v : v + 1], depths=depths[v : v + 1]),
         PhaseRegions(None if densify is None else densify[v], None if floaters is None else floaters[v]))
        for v in range(V)
    ]


def _slow_fraction(mx, my, rx, ry, mask):
    """Share of the mask pixels whose centres lie in [mx - rx, mx + rx] x [my - ry, my + ry]; None if none do."""
    H, W = mask.shape
    inside = total = 0.0
    if rx <= 0 or ry <= 0:
        return None
    for r in range(H):
        for c in range(W):
            if mx - rx <= c + 0.5 <= mx + rx and my - ry <= r + 0.5 <= my + ry:
                total += 1
                inside += float(mask[r, c])
    return None if total == 0 else inside / total


def _random_case(seed, V=3, N=40, H=17, W=23, per_axis=False, float_mask=False):
    g = torch.Generator().manual_seed(seed)
    means2d = torch.rand(V, N, 2, generator=g) * torch.tensor([W + 10.0, H + 10.0]) - 5.0
    radii = torch.randint(0, 7, (V, N, 2) if per_axis else (V, N), generator=g)
    masks = torch.rand(V, H, W, generator=g)
    masks = masks if float_mask else masks > 0.6
    return means2d, radii, masks


@pytest.mark.parametrize("per_axis", [False, True])
@pytest.mark.parametrize("float_mask", [False, True])
def test_fractions_match_slow_loop(per_axis, float_mask):
    means2d, radii, masks = _random_case(1, per_axis=per_axis, float_mask=float_mask)
    fractions, visible = footprint_fractions(means2d, radii, masks)
    V, N = fractions.shape
    r = radii.float() if per_axis else radii.float()[..., None].expand(V, N, 2)
    for v in range(V):
        for i in range(N):
            mx, my = means2d[v, i].tolist()
            expected = _slow_fraction(mx, my, float(r[v, i, 0]), float(r[v, i, 1]), masks[v])
            assert bool(visible[v, i]) == (expected is not None)
            assert float(fractions[v, i]) == pytest.approx(expected or 0.0, abs=1e-5)


def test_combine_views_max_and_mean_over_visible_views_only():
    values = torch.tensor([[0.2, -0.5, 0.9, 0.0], [0.6, 0.1, 0.0, 0.0]])
    visible = torch.tensor([[True, True, False, False], [True, False, True, False]])
    torch.testing.assert_close(combine_views(values, visible, "max"), torch.tensor([0.6, -0.5, 0.0, 0.0]))
    torch.testing.assert_close(combine_views(values, visible, "mean"), torch.tensor([0.4, -0.5, 0.0, 0.0]))
    with pytest.raises(ValueError):
        combine_views(values, visible, "median")  # type: ignore[arg-type]


def test_regions_to_guidance_matches_slow_loop_with_outside_weight():
    means2d, radii, masks = _random_case(2, V=2, N=30)
    got, prune = regions_to_guidance(_views(means2d, radii, densify=masks), densify_outside=-0.5, combine="mean")
    assert prune is None
    V, N = means2d.shape[:2]
    for i in range(N):
        vals = []
        for v in range(V):
            f = _slow_fraction(*means2d[v, i].tolist(), float(radii[v, i]), float(radii[v, i]), masks[v])
            if f is not None:
                vals.append(f - 0.5 * (1 - f))
        expected = sum(vals) / len(vals) if vals else 0.0
        assert float(got[i]) == pytest.approx(expected, abs=1e-5)
    assert got.shape == (N,) and got.dtype == torch.float32 and got.min() >= -0.5 and got.max() <= 1.0


def test_culled_and_offscreen_gaussians_get_no_guidance():
    means2d = torch.tensor([[[5.0, 5.0], [100.0, 100.0], [5.0, 5.0]]])
    radii = torch.tensor([[3, 3, 0]])
    got, _ = regions_to_guidance(_views(means2d, radii, densify=torch.ones(1, 10, 10, dtype=torch.bool)))
    torch.testing.assert_close(got, torch.tensor([1.0, 0.0, 0.0]))


def test_prune_guidance_is_the_max_over_views_of_floater_overlap_in_front_of_the_surface():
    means2d, radii, masks = _random_case(4, V=2, N=30, H=12, W=12)
    depths = torch.rand(2, 30, generator=torch.Generator().manual_seed(5)) * 20  # surface at 10: half in front
    densify, got = regions_to_guidance(_views(means2d, radii, floaters=masks, depths=depths), floater_depth_margin=0.1)
    assert densify is None
    for i in range(30):
        vals = []
        for v in range(2):
            f = _slow_fraction(*means2d[v, i].tolist(), float(radii[v, i]), float(radii[v, i]), masks[v])
            if f is not None:
                mx, my = means2d[v, i].tolist()
                front = 0 <= mx < 12 and 0 <= my < 12 and 0 < float(depths[v, i]) < 9.0
                vals.append(f * front)
        assert float(got[i]) == pytest.approx(max(vals) if vals else 0.0, abs=1e-5)
    assert 0 < int((got > 0).sum()) < 30


def test_region_masks_per_phase():
    box = Box.make(0, 0, 500, 500, "leaves")
    floater = Box.make(500, 500, 1000, 1000, "floating blob")
    d, p = region_masks("detail", [box], 4, 4)
    assert p is None and d.sum() == 4 and bool(d[0, 0]) and not bool(d[3, 3])
    d, _ = region_masks("detail", [box], 4, 4, detail_target="complement")
    assert d.sum() == 12 and not bool(d[0, 0])
    d, p = region_masks("subject", [box], 4, 4)
    assert p is None and d.sum() == 12  # the background
    d, p = region_masks("artifacts", [box, floater], 4, 4, floater_keywords=("float",))
    assert d.sum() == 4 and bool(d[0, 0]) and p.sum() == 8  # the floater box is searched, not densified
    d, p = region_masks("artifacts", [floater], 4, 4, floater_keywords=("float",))
    assert d is None and p.sum() == 4
    assert region_masks("subject", [], 4, 4) == (None, None)  # no answer never means "everything"
    assert region_masks("artifacts", [floater], 4, 4).size == (4, 4) and PhaseRegions(None, None).size is None
    assert is_floater(Box.make(0, 0, 1, 1, "Ghosted Wall"), ("ghost",)) and not is_floater(box, ("ghost",))
    with pytest.raises(ValueError):
        region_masks("detail", [box], 4, 4, detail_target="both")  # type: ignore[arg-type]


def test_in_front_of_surface():
    surface = torch.full((1, 4, 4), 10.0)
    alpha = torch.ones(1, 4, 4)
    alpha[0, 0, 0] = 0.0
    means2d = torch.tensor([[[1.5, 1.5], [1.5, 1.5], [0.5, 0.5], [9.0, 1.0], [2.5, 2.5]]])
    depths = torch.tensor([[5.0, 9.5, 5.0, 5.0, 8.9]])
    front = in_front_of_surface(means2d, depths, surface, alpha, margin=0.1)
    assert front.tolist() == [[True, False, False, False, True]]


def test_guidance_runs_on_many_gaussians():
    means2d, radii, masks = _random_case(3, V=2, N=200_000, H=120, W=160)
    got, _ = regions_to_guidance(_views(means2d, radii, densify=masks))
    assert got.shape == (200_000,) and math.isfinite(float(got.sum()))
