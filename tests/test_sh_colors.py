"""The SH colours both rasterizer paths share (splat_core.rendering.sh_colors) against gsplat's own rule."""

import pytest
import torch
from gsplat.cuda._torch_impl import _spherical_harmonics

from splat_core.rendering import rasterize
from splat_core.rendering.sh_colors import camera_centres, view_colors


def _rigid_viewmats(n: int, seed: int) -> torch.Tensor:
    """Random world-to-camera transforms [n, 4, 4]: rotations from QR (det +1), translations of a few units."""
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=1, dim2=2))[:, None, :]
    q[torch.det(q) < 0, :, 0] *= -1
    viewmats = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
    viewmats[:, :3, :3] = q
    viewmats[:, :3, 3] = torch.randn(n, 3, generator=g, dtype=torch.float64) * 3.0
    return viewmats


def test_camera_centres_are_the_inverse_translation():
    viewmats = _rigid_viewmats(5, seed=0)
    expected = torch.inverse(viewmats)[:, :3, 3]
    torch.testing.assert_close(camera_centres(viewmats), expected, rtol=0, atol=1e-12)
    # the centre maps to the camera origin
    centres = torch.cat([camera_centres(viewmats), torch.ones(5, 1, dtype=torch.float64)], dim=1)
    origin = (viewmats @ centres[:, :, None])[:, :3, 0]
    torch.testing.assert_close(origin, torch.zeros_like(origin), rtol=0, atol=1e-12)


@pytest.mark.parametrize("per_camera", [False, True])
def test_view_colors_follow_gsplats_rule(per_camera):
    """gsplat's rasterization: dirs = means - inverse(viewmats)[:, :3, 3], colours = max(SH(dirs) + 0.5, 0)."""
    g = torch.Generator().manual_seed(1)
    C, N, degree = 3, 40, 2
    viewmats = _rigid_viewmats(C, seed=2)
    means = torch.randn(N, 3, generator=g, dtype=torch.float64)
    coeffs = torch.randn(*((C,) if per_camera else ()), N, 16, 3, generator=g, dtype=torch.float64) * 0.5
    dirs = means[None] - torch.inverse(viewmats)[:, None, :3, 3]
    shs = coeffs if per_camera else coeffs.expand(C, -1, -1, -1)
    expected = torch.clamp_min(_spherical_harmonics(degree, dirs, shs) + 0.5, 0.0)
    got = view_colors(means, coeffs, viewmats, degree, _spherical_harmonics)
    assert got.shape == (C, N, 3) and (got == 0).any()  # the clamp acts on some of these random coefficients
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)


def test_view_colors_refuse_bad_shapes():
    viewmats = _rigid_viewmats(2, seed=3)
    means = torch.zeros(4, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="SH coefficients must be"):
        view_colors(means, torch.zeros(5, 4, 3, dtype=torch.float64), viewmats, 1, _spherical_harmonics)
    with pytest.raises(ValueError, match="needs 9 bases"):
        view_colors(means, torch.zeros(4, 4, 3, dtype=torch.float64), viewmats, 2, _spherical_harmonics)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA for gsplat's kernels")
def test_cuda_rasterize_matches_gsplats_own_sh_path():
    """rasterize() hands gsplat finished colours; images and gradients must equal gsplat's sh_degree path."""
    from gsplat.rendering import rasterization

    g = torch.Generator().manual_seed(4)
    N = 500
    means = (torch.randn(N, 3, generator=g) * 0.6 + torch.tensor([0.0, 0.0, 3.0])).cuda()
    quats = torch.randn(N, 4, generator=g).cuda()
    scales = (torch.rand(N, 3, generator=g) * 0.05 + 0.01).cuda()
    opacities = torch.rand(N, generator=g).cuda()
    sh = (torch.randn(N, 16, 3, generator=g) * 0.3).cuda()
    viewmats = torch.eye(4).repeat(2, 1, 1).cuda()
    viewmats[1, :3, :3] = torch.tensor([[0.96, 0.0, 0.28], [0.0, 1.0, 0.0], [-0.28, 0.0, 0.96]]).cuda()
    viewmats[1, :3, 3] = torch.tensor([0.3, -0.1, 0.2]).cuda()
    Ks = torch.tensor([[80.0, 0.0, 40.0], [0.0, 80.0, 30.0], [0.0, 0.0, 1.0]]).repeat(2, 1, 1).cuda()
    weights = torch.rand(2, 60, 80, 4, device="cuda")
    results = []
    for fn in (rasterize, rasterization):
        inputs = [t.clone().requires_grad_() for t in (means, quats, scales, opacities, sh)]
        out, alphas, _ = fn(*inputs, viewmats, Ks, 80, 60, sh_degree=3, render_mode="RGB+ED", packed=False)
        ((out * weights).sum() + alphas.sum()).backward()
        results.append([out, alphas] + [t.grad for t in inputs])
    for name, ours, theirs in zip(["colors", "alphas", "means", "quats", "scales", "opacities", "sh"], *results):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5 * theirs.abs().max().item(), msg=name)
