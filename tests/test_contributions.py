"""count_contributions: hand-built occlusion / transparency cases and a slow per-pixel reference kept here.

Scenes are rendered by the torch rasteriser (CPU), whose ``info`` the counting reads; the CUDA test renders the same
scene with gsplat's kernels and compares the two paths.
"""

import pytest
import torch
import torch.nn.functional as F

from splat_core.rendering import rasterize_torch
from splat_core.rendering.contributions import count_contributions

W, H, FOCAL = 32, 32, 32.0


def _render(means, scales, opacities, n_cams=1, device="cpu", cuda_kernels=False):
    n = means.shape[0]
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1.0
    viewmats = torch.eye(4)[None].repeat(n_cams, 1, 1)
    viewmats[1:, 0, 3] = torch.linspace(-0.3, 0.3, max(n_cams - 1, 1))[: n_cams - 1]  # shifted cameras
    Ks = torch.tensor([[FOCAL, 0, W / 2], [0, FOCAL, H / 2], [0, 0, 1.0]])[None].repeat(n_cams, 1, 1)
    args = [t.to(device) for t in (means, quats, scales, opacities, torch.rand(n, 3), viewmats, Ks)]
    if cuda_kernels:
        from gsplat import rasterization

        _, _, info = rasterization(*args, W, H, packed=False)
    else:
        _, _, info = rasterize_torch(*args, W, H)
    return info


def _slow_count(info, masks):
    """Reference: per pixel, the Gaussians whose tile range holds it, front to back, with gsplat's rule."""
    C, N = info["means2d"].shape[:2]
    ts = info["tile_size"]
    out = torch.zeros(C, N, dtype=torch.float64)
    for c in range(C):
        m, con, op, d = (info[k][c].double() for k in ("means2d", "conics", "opacities", "depths"))
        r = info["radii"][c].double()
        r = r[:, None].expand(N, 2) if r.dim() == 1 else r
        order = [i for i in torch.argsort(d, stable=True).tolist() if (r[i] > 0).all()]
        lo = torch.floor((m - r) / ts)
        hi = torch.ceil((m + r) / ts)
        for y in range(H):
            for x in range(W):
                if not masks[c, y, x]:
                    continue
                tx, ty, t = x // ts, y // ts, 1.0
                for i in order:
                    if not (lo[i, 0] <= tx < hi[i, 0] and lo[i, 1] <= ty < hi[i, 1]):
                        continue
                    dx, dy = m[i, 0] - (x + 0.5), m[i, 1] - (y + 0.5)
                    sigma = 0.5 * (con[i, 0] * dx * dx + con[i, 2] * dy * dy) + con[i, 1] * dx * dy
                    alpha = min(0.999, float(op[i] * torch.exp(-sigma)))
                    if sigma < 0 or alpha < 1.0 / 255.0:
                        continue
                    if t * (1.0 - alpha) <= 1e-4:
                        break
                    out[c, i] += 1
                    t *= 1.0 - alpha
    return out


def test_occluded_and_transparent_gaussians_count_zero():
    means = torch.tensor(
        [
            [0.0, 0.0, 2.0],  # 0: opaque wall covering the image: counts every masked pixel
            [0.0, 0.0, 2.5],  # 1: second opaque wall: T would fall to <= 1e-4, so each pixel stops before it
            [0.0, 0.0, 4.0],  # 2: small opaque Gaussian behind both walls: occluded
            [0.2, 0.1, 1.0],  # 3: in front of everything but too transparent to reach alpha 1/255
        ]
    )
    scales = torch.tensor([[20.0, 20.0, 0.01], [20.0, 20.0, 0.01], [0.1, 0.1, 0.1], [0.1, 0.1, 0.1]])
    opacities = torch.tensor([1.0, 1.0, 1.0, 0.003])
    info = _render(means, scales, opacities)
    masks = torch.rand(1, H, W, generator=torch.Generator().manual_seed(0)) > 0.5
    counts = count_contributions(info, masks)
    assert counts.shape == (1, 4) and counts.dtype == torch.float32
    assert counts[0].tolist() == [float(masks.sum()), 0.0, 0.0, 0.0]
    assert (info["radii"][0, 2] > 0).all() and (info["radii"][0, 3] > 0).all()  # not culled: the rule zeroes them
    # without the walls the small Gaussian counts its pixels
    alone = count_contributions(_render(means[2:3], scales[2:3], opacities[2:3]), masks)
    assert alone[0, 0] > 0


def test_visible_opaque_gaussian_counts_its_masked_pixels():
    # isotropic, centred on a tile (its alpha >= 1/255 disc stays inside the tile, so the tile binning cuts nothing)
    means = torch.tensor([[-0.25, -0.25, 2.0]])  # projects to pixel (8, 8)
    info = _render(means, torch.full((1, 3), 0.08), torch.tensor([0.99]))
    masks = torch.rand(1, H, W, generator=torch.Generator().manual_seed(1)) > 0.3
    ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    a, b, c = info["conics"][0, 0].tolist()
    mx, my = info["means2d"][0, 0].tolist()
    dx, dy = mx - xs, my - ys
    alpha = (0.99 * torch.exp(-(0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy))).clamp_max(0.999)
    expected = ((alpha >= 1 / 255) & masks[0]).sum()
    assert 20 < expected < masks[0].sum() / 2  # a real footprint, smaller than the image
    assert count_contributions(info, masks)[0, 0].item() == expected.item()
    assert count_contributions(info, torch.zeros_like(masks))[0, 0].item() == 0


def _random_scene(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = torch.cat([torch.rand(n, 2, generator=g) * 2 - 1, 1.5 + 3 * torch.rand(n, 1, generator=g)], dim=1)
    scales = 0.02 + 0.2 * torch.rand(n, 3, generator=g)
    opacities = torch.rand(n, generator=g)
    opacities[:5] = 0.002  # below 1/255 everywhere
    opacities[5:15] = 0.999  # opaque: occlusion and early stops
    return means, scales, opacities


@pytest.mark.parametrize("pairs_per_chunk", [2**19, 300])
def test_matches_slow_reference(pairs_per_chunk):
    means, scales, opacities = _random_scene()
    info = _render(means, scales, opacities, n_cams=2)
    masks = torch.rand(2, H, W, generator=torch.Generator().manual_seed(2)) > 0.4
    got = count_contributions(info, masks, pairs_per_chunk=pairs_per_chunk)
    torch.testing.assert_close(got.double(), _slow_count(info, masks), rtol=0, atol=0)
    assert (got[:, :5] == 0).all()


def test_fewer_than_the_footprint_box():
    from splat_core.rendering.footprint import count_in_footprints

    means, scales, opacities = _random_scene(seed=3)
    info = _render(means, scales, opacities)
    masks = torch.ones(1, H, W, dtype=torch.bool)
    blended = count_contributions(info, masks)
    box = count_in_footprints(info["means2d"], info["radii"], masks)
    assert blended.sum() < 0.8 * box.sum()  # occlusion and opacity cut the box counts


def test_errors():
    info = _render(*_random_scene(n=5), n_cams=2)
    with pytest.raises(ValueError, match="do not match"):
        count_contributions(info, torch.ones(1, H, W, dtype=torch.bool))
    with pytest.raises(ValueError, match="do not match"):
        count_contributions(info, torch.ones(2, H, W + 1, dtype=torch.bool))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="No CUDA device")
def test_cuda_matches_cpu():
    means, scales, opacities = _random_scene(n=200, seed=4)
    masks = torch.rand(3, H, W, generator=torch.Generator().manual_seed(5)) > 0.5
    cpu = count_contributions(_render(means, scales, opacities, n_cams=3), masks)
    info = _render(means, scales, opacities, n_cams=3, device="cuda", cuda_kernels=True)
    gpu = count_contributions(info, masks.cuda()).cpu()
    assert gpu.shape == cpu.shape
    # float rounding differs between the kernels and torch at the 1/255 and 1e-4 boundaries: allow a few pixels
    assert (gpu - cpu).abs().max() <= 2 and (gpu - cpu).abs().sum() <= 0.01 * cpu.sum() + 3
    assert cpu.sum() > 100


def test_antialiased_opacities_are_used():
    """The per-view opacities in ``info`` (compensated when antialiased) decide alpha, not the raw ones."""
    means = torch.tensor([[0.0, 0.0, 2.0]])
    scales = torch.full((1, 3), 0.004)  # sub-pixel: antialiasing compensation dims it strongly
    n_plain = count_contributions(_render(means, scales, torch.tensor([0.05])), torch.ones(1, H, W, dtype=torch.bool))
    quats = F.pad(torch.ones(1, 1), (0, 3))
    Ks = torch.tensor([[[FOCAL, 0, W / 2], [0, FOCAL, H / 2], [0, 0, 1.0]]])
    _, _, info = rasterize_torch(means, quats, scales, torch.tensor([0.05]), torch.rand(1, 3), torch.eye(4)[None], Ks,
                                 W, H, rasterize_mode="antialiased")
    n_aa = count_contributions(info, torch.ones(1, H, W, dtype=torch.bool))
    assert n_plain[0, 0] > 0 and n_aa[0, 0] < n_plain[0, 0]
