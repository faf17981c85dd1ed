"""Tests for the pure-PyTorch rasterizer against analytic cases, finite differences and gsplat's own pieces."""

import math

import pytest
import torch
from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci
from gsplat.strategy import DefaultStrategy

from splat_core.rendering import rasterize, rasterize_torch, torch_rasterizer
from splat_core.rendering.torch_rasterizer import _CompositeTiles, _pair_terms

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199


def _camera(f=100.0, cx=32.0, cy=24.0, centre=(0.0, 0.0, 0.0), dtype=torch.float64):
    """One camera looking down +z (OpenCV), optical centre at world point ``centre``."""
    viewmats = torch.eye(4, dtype=dtype)[None].clone()
    viewmats[0, :3, 3] = -torch.tensor(centre, dtype=dtype)
    Ks = torch.tensor([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]], dtype=dtype)[None]
    return viewmats, Ks


def _gaussians(means, scale, opacities, colors, dtype=torch.float64):
    """Isotropic Gaussians: (means [N, 3], quats [N, 4], scales [N, 3], opacities [N], colors [N, D])."""
    means = torch.tensor(means, dtype=dtype)
    n = means.shape[0]
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=dtype).repeat(n, 1)
    scales = torch.full((n, 3), scale, dtype=dtype) if isinstance(scale, float) else torch.tensor(scale, dtype=dtype)
    return means, quats, scales, torch.tensor(opacities, dtype=dtype), torch.tensor(colors, dtype=dtype)


def _pixel_grid(height, width, dtype=torch.float64):
    ys, xs = torch.meshgrid(torch.arange(height, dtype=dtype), torch.arange(width, dtype=dtype), indexing="ij")
    return xs + 0.5, ys + 0.5


def _per_axis(radii):
    """gsplat 1.4 radii [C, N] or gsplat 1.5 radii [C, N, 2] as per-axis radii [C, N, 2]."""
    return radii[..., None].expand(*radii.shape, 2) if radii.dim() == 2 else radii


def test_single_gaussian_footprint_is_the_projected_gaussian_inside_its_tiles():
    f, z, width, height, opacity = 100.0, 2.0, 48, 32, 0.99
    # Chosen so that gsplat 1.4's 3-sigma radius (6 px) clips the 1/255 contour (6.56 px) at a tile border.
    var = (5.99 / 3.0) ** 2 - 0.1  # projected variance in px^2, eps2d included
    scale = math.sqrt(var - 0.3) * z / f
    cx, cy = 22.01, 16.5
    gs = _gaussians([[0.0, 0.0, z]], scale, [opacity], [[0.2, 0.4, 0.8]])
    viewmats, Ks = _camera(f=f, cx=cx, cy=cy)
    background = torch.tensor([[0.1, 0.1, 0.1]], dtype=torch.float64)
    colors, alphas, info = rasterize_torch(*gs, viewmats, Ks, width, height, backgrounds=background)

    px, py = _pixel_grid(height, width)
    r2 = (px - cx) ** 2 + (py - cy) ** 2
    analytic = (opacity * torch.exp(-0.5 * r2 / var)).clamp_max(0.999)
    analytic = torch.where(analytic >= 1.0 / 255.0, analytic, 0.0)
    rx, ry = _per_axis(info["radii"])[0, 0].tolist()
    in_tiles = (
        (px >= math.floor((cx - rx) / 16) * 16)
        & (px < math.ceil((cx + rx) / 16) * 16)
        & (py >= math.floor((cy - ry) / 16) * 16)
        & (py < math.ceil((cy + ry) / 16) * 16)
    )
    expected = analytic * in_tiles
    torch.testing.assert_close(alphas[0, ..., 0], expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(colors[0], expected[..., None] * gs[4] + (1 - expected[..., None]) * 0.1)
    # Centred on pixel (22, 16), the Gaussian's colour there is opacity * colour over the background.
    centred, _, _ = rasterize_torch(
        *gs, viewmats, _camera(f=f, cx=22.5, cy=cy)[1], width, height, backgrounds=background
    )
    torch.testing.assert_close(centred[0, 16, 22], opacity * gs[4][0] + (1 - opacity) * 0.1)
    assert (expected > 0).sum() > 100
    if info["radii"].dim() == 2:  # gsplat 1.4: the tile bounding box, not the 1/255 contour, cuts pixel column 15
        assert analytic[:, 15].max() > 1.0 / 255.0 and alphas[0, :, 15].max() == 0.0


def test_two_gaussians_composite_front_to_back_whatever_the_input_order():
    gs = _gaussians([[0.0, 0.0, 3.0], [0.0, 0.0, 2.0]], 0.03, [0.7, 0.6], [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    viewmats, Ks = _camera(cx=32.5, cy=24.5)
    bg = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    colors, alphas, _ = rasterize_torch(*gs, viewmats, Ks, 64, 48, backgrounds=bg)
    flipped = [t.flip(0) for t in gs]
    colors_flipped, alphas_flipped, _ = rasterize_torch(*flipped, viewmats, Ks, 64, 48, backgrounds=bg)
    torch.testing.assert_close(colors, colors_flipped, rtol=0, atol=0)
    torch.testing.assert_close(alphas, alphas_flipped, rtol=0, atol=0)
    # At the shared centre pixel: front red (0.6), then back green (0.7), then the blue background.
    front, back = 0.6, 0.7
    expected = torch.tensor([front, (1 - front) * back, (1 - front) * (1 - back)], dtype=torch.float64)
    torch.testing.assert_close(colors[0, 24, 32], expected)
    torch.testing.assert_close(alphas[0, 24, 32, 0], torch.tensor(1 - (1 - front) * (1 - back), dtype=torch.float64))


@pytest.mark.parametrize(
    "opacities, expected_colour, expected_alpha",
    [
        # T: 1 -> 0.01 -> 0.001; the third would leave 5e-5 <= 1e-4, so it and everything behind it are skipped.
        ([0.99, 0.9, 0.95], [0.99, 0.01 * 0.9, 0.0], 1 - 0.01 * 0.1),
        # The second would leave 5e-5: the pixel stops after the first.
        ([0.995, 0.99, 0.5], [0.995, 0.0, 0.0], 0.995),
    ],
)
def test_transmittance_cutoff_excludes_the_gaussian_that_would_cross_it(opacities, expected_colour, expected_alpha):
    gs = _gaussians([[0.0, 0.0, 2.0], [0.0, 0.0, 3.0], [0.0, 0.0, 4.0]], 0.05, opacities, torch.eye(3).tolist())
    viewmats, Ks = _camera(cx=32.5, cy=24.5)
    colors, alphas, _ = rasterize_torch(*gs, viewmats, Ks, 64, 48)
    torch.testing.assert_close(colors[0, 24, 32], torch.tensor(expected_colour, dtype=torch.float64))
    torch.testing.assert_close(alphas[0, 24, 32, 0], torch.tensor(expected_alpha, dtype=torch.float64))


def test_sh_degree_0_colour_is_c0_times_coefficient_plus_half_clamped():
    coeffs = torch.tensor([[[0.3, -1.0, -5.0]]], dtype=torch.float64)  # [N, K=1, 3]
    means, quats, scales, opacities, _ = _gaussians([[0.0, 0.0, 2.0]], 0.05, [0.8], [[0.0, 0.0, 0.0]])
    viewmats, Ks = _camera(cx=32.5, cy=24.5)
    colors, _, _ = rasterize_torch(means, quats, scales, opacities, coeffs, viewmats, Ks, 64, 48, sh_degree=0)
    expected = 0.8 * (SH_C0 * coeffs[0, 0] + 0.5).clamp_min(0.0)
    torch.testing.assert_close(colors[0, 24, 32], expected)


def test_sh_degree_1_uses_the_direction_from_the_camera_centre():
    centre = (0.3, -0.2, -1.0)
    offset = torch.tensor([0.5, 0.25, 3.0], dtype=torch.float64)  # Gaussian relative to the camera centre
    means = (torch.tensor(centre, dtype=torch.float64) + offset)[None]
    coeffs = torch.tensor(
        [[[0.1, 0.2, 0.3], [0.4, -0.5, 0.6], [-0.7, 0.8, 0.9], [1.0, 1.1, -1.2]]], dtype=torch.float64
    )
    _, quats, scales, opacities, _ = _gaussians([[0.0, 0.0, 0.0]], 0.05, [0.9], [[0.0, 0.0, 0.0]])
    viewmats, Ks = _camera(f=120.0, cx=32.5, cy=24.5, centre=centre)
    colors, _, _ = rasterize_torch(means, quats, scales, opacities, coeffs, viewmats, Ks, 64, 48, sh_degree=1)
    x, y, z = (offset / offset.norm()).tolist()
    sh = SH_C0 * coeffs[0, 0] - SH_C1 * y * coeffs[0, 1] + SH_C1 * z * coeffs[0, 2] - SH_C1 * x * coeffs[0, 3]
    # The mean projects to (32.5 + 120 * 0.5 / 3, 24.5 + 120 * 0.25 / 3) = (52.5, 34.5): pixel (x=52, y=34).
    torch.testing.assert_close(colors[0, 34, 52], 0.9 * (sh + 0.5).clamp_min(0.0))


def test_depth_modes():
    gs = _gaussians([[0.1, -0.05, 2.5]], 0.05, [0.9], [[0.2, 0.5, 0.7]])
    viewmats, Ks = _camera()
    bg = torch.tensor([[1.0, 1.0, 1.0]], dtype=torch.float64)
    rgb, alphas, _ = rasterize_torch(*gs, viewmats, Ks, 64, 48, backgrounds=bg)
    depth, _, _ = rasterize_torch(*gs, viewmats, Ks, 64, 48, render_mode="D", backgrounds=bg)
    expected_depth, _, _ = rasterize_torch(*gs, viewmats, Ks, 64, 48, render_mode="ED")
    rgbd, _, _ = rasterize_torch(*gs, viewmats, Ks, 64, 48, render_mode="RGB+D", backgrounds=bg)
    rgbed, _, _ = rasterize_torch(*gs, viewmats, Ks, 64, 48, render_mode="RGB+ED")
    covered = alphas[0, ..., 0] > 0
    assert covered.sum() > 20
    torch.testing.assert_close(depth, 2.5 * alphas)  # accumulated depth, background replaced by 0
    torch.testing.assert_close(expected_depth[0, ..., 0][covered], torch.full_like(alphas[0, ..., 0][covered], 2.5))
    assert (expected_depth[0, ..., 0][~covered] == 0).all()
    torch.testing.assert_close(rgbd, torch.cat([rgb, depth], dim=-1))
    torch.testing.assert_close(rgbed[..., 3:], expected_depth)


@pytest.mark.parametrize("axis", [0, 1])
def test_camera_convention_x_right_y_down(axis):
    position = [0.0, 0.0, 2.0]
    position[axis] = 0.3
    gs = _gaussians([position], 0.02, [0.9], [[1.0, 1.0, 1.0]])
    # Camera centred at z = -1: the world-to-camera matrix moves the Gaussian to depth 3.
    viewmats, Ks = _camera(f=90.0, cx=32.5, cy=24.5, centre=(0.0, 0.0, -1.0))
    _, alphas, info = rasterize_torch(*gs, viewmats, Ks, 64, 48)
    row, col = divmod(int(alphas[0, ..., 0].argmax()), 64)
    expected = (32 + round(90 * 0.3 / 3.0), 24) if axis == 0 else (32, 24 + round(90 * 0.3 / 3.0))
    assert (col, row) == expected
    torch.testing.assert_close(info["depths"], torch.tensor([[3.0]], dtype=torch.float64))


def _random_scene(n, seed, dtype=torch.float64, spread=(0.5, 0.4)):
    g = torch.Generator().manual_seed(seed)
    means = torch.stack(
        [
            (torch.rand(n, generator=g) - 0.5) * 2 * spread[0],
            (torch.rand(n, generator=g) - 0.5) * 2 * spread[1],
            2.0 + torch.rand(n, generator=g),
        ],
        dim=-1,
    )
    quats = torch.randn(n, 4, generator=g)
    scales = 0.03 + 0.05 * torch.rand(n, 3, generator=g)
    opacities = 0.3 + 0.65 * torch.rand(n, generator=g)
    colors = torch.rand(n, 3, generator=g)
    return [t.to(dtype) for t in (means, quats, scales, opacities, colors)]


@pytest.mark.parametrize("rasterize_mode, render_mode", [("classic", "RGB+D"), ("antialiased", "RGB+ED")])
def test_gradients_match_finite_differences(rasterize_mode, render_mode):
    params = _random_scene(5, seed=3)
    viewmats, Ks = _camera(f=40.0, cx=12.0, cy=10.0)
    weights = torch.rand(1, 20, 24, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    bg = torch.tensor([[0.2, 0.3, 0.4]], dtype=torch.float64)

    def loss(means, quats, scales, opacities, colors):
        out, alphas, _ = rasterize_torch(
            means, quats, scales, opacities, colors, viewmats, Ks, 24, 20,
            backgrounds=bg, render_mode=render_mode, rasterize_mode=rasterize_mode,
        )  # fmt: skip
        return (out * weights).sum() + (alphas[..., 0] * weights[..., 0]).sum()

    inputs = [p.clone().requires_grad_() for p in params]
    assert torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_analytic_backward_matches_autograd_through_the_same_forward():
    """Dense overlaps (transmittance cutoffs, clamped alphas, padding) in one chunk: _CompositeTiles vs autograd."""
    g = torch.Generator().manual_seed(1)
    B, K, P = 3, 40, 64
    means2d = (torch.rand(B, K, 2, generator=g, dtype=torch.float64) * 8).requires_grad_()
    conics = torch.tensor([0.3, 0.05, 0.4], dtype=torch.float64).repeat(B, K, 1)
    conics = (conics * (0.5 + torch.rand(B, K, 1, generator=g, dtype=torch.float64))).requires_grad_()
    opacities = (0.5 + 0.55 * torch.rand(B, K, generator=g, dtype=torch.float64)).clamp_max(1.0).requires_grad_()
    colors = torch.rand(B, K, 3, generator=g, dtype=torch.float64).requires_grad_()
    valid = torch.rand(B, K, generator=g) > 0.1
    with torch.no_grad():  # a few opaque Gaussians centred on pixel centres: clamped alphas
        means2d[:, :4] = torch.tensor([2.5, 3.5], dtype=torch.float64)
        opacities[:, :4] = 1.0
    ys, xs = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    pix = torch.stack([xs, ys], -1).reshape(1, P, 2).repeat(B, 1, 1).to(torch.float64) + 0.5
    v_out = torch.randn(B, P, 3, generator=g, dtype=torch.float64)
    v_trans = torch.randn(B, P, generator=g, dtype=torch.float64)
    inputs = (means2d, conics, opacities, colors)

    gids = torch.arange(B * K).reshape(B, K)
    absgrad = torch.zeros(B * K, 2, dtype=torch.float64)
    out, trans = _CompositeTiles.apply(means2d, conics, opacities * valid, colors, pix, gids, absgrad)
    grads = torch.autograd.grad((out * v_out).sum() + (trans * v_trans).sum(), inputs)

    _, _, falloff, alpha, ref_trans = _pair_terms(means2d, conics, opacities * valid, pix)
    raw = (opacities * valid)[:, None, :] * falloff
    uncut = torch.where(raw >= 1 / 255, raw.clamp_max(0.999), 0.0)
    assert (torch.cumprod(1 - uncut, dim=-1)[..., -1] <= 1e-4).any() and (alpha == 0.999).any()
    ref_out = torch.bmm(alpha * ref_trans / (1 - alpha), colors)
    ref_loss = (ref_out * v_out).sum() + (ref_trans[..., -1] * v_trans).sum()
    ref_grads = torch.autograd.grad(ref_loss, inputs)
    torch.testing.assert_close(out, ref_out)
    for grad, ref in zip(grads, ref_grads):
        torch.testing.assert_close(grad, ref)
    assert (absgrad.reshape(B, K, 2) >= grads[0].abs() - 1e-12).all()


def test_absgrad_is_the_sum_over_pixels_of_absolute_per_pixel_gradients():
    params = [p.requires_grad_() for p in _random_scene(6, seed=5)]
    viewmats, Ks = _camera(f=30.0, cx=10.0, cy=6.0)
    weights = torch.randn(1, 12, 20, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    colors, _, info = rasterize_torch(*params, viewmats, Ks, 20, 12, absgrad=True)
    info["means2d"].retain_grad()
    (colors * weights).sum().backward()
    absgrad = info["means2d"].absgrad

    ref_colors, _, ref_info = rasterize_torch(*params, viewmats, Ks, 20, 12)
    reference = torch.zeros_like(absgrad)
    for y in range(12):  # slow reference: one backward per pixel
        for x in range(20):
            (grad,) = torch.autograd.grad(
                (ref_colors[0, y, x] * weights[0, y, x]).sum(), ref_info["means2d"], retain_graph=True
            )
            reference += grad.abs()
    assert absgrad.shape == (1, 6, 2) and (reference > 0).any()
    torch.testing.assert_close(absgrad, reference)
    assert (absgrad >= info["means2d"].grad.abs() - 1e-12).all()


def test_info_matches_gsplat_projection_and_radii_format():
    means, quats, scales, opacities, colors = _random_scene(8, seed=7, dtype=torch.float32)
    means[0, 2] = -1.0  # behind the camera: culled
    viewmats, Ks = _camera(f=50.0, cx=16.0, cy=12.0, dtype=torch.float32)
    _, _, info = rasterize_torch(means, quats, scales, opacities, colors, viewmats, Ks, 32, 24)
    covars, _ = _quat_scale_to_covar_preci(quats, scales, True, False, triu=False)
    radii, means2d, depths, conics, _ = _fully_fused_projection(means, covars, viewmats, Ks, 32, 24)
    assert info["radii"].shape == radii.shape and info["radii"].dtype == radii.dtype
    assert torch.equal(info["radii"], radii) and (radii[0, 0] == 0).all() and (radii[0, 1:] > 0).all()
    for key, ref in (("means2d", means2d), ("depths", depths), ("conics", conics)):
        torch.testing.assert_close(info[key], ref)
    torch.testing.assert_close(info["opacities"], opacities[None])
    assert info["gaussian_ids"] is None and info["n_cameras"] == 1 and info["tile_size"] == 16
    assert (info["width"], info["height"], info["tile_width"], info["tile_height"]) == (32, 24, 2, 2)
    assert info["tiles_per_gauss"][0, 0] == 0 and (info["tiles_per_gauss"][0, 1:] > 0).all()


def test_batched_cameras_match_single_camera_renders_and_culled_scene_is_background():
    params = _random_scene(10, seed=11)
    viewmats, Ks = _camera(f=40.0, cx=16.0, cy=12.0)
    second = viewmats.clone()
    second[0, :3, 3] = torch.tensor([0.2, -0.1, 0.3], dtype=torch.float64)
    viewmats2, Ks2 = torch.cat([viewmats, second]), Ks.repeat(2, 1, 1)
    bg = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]], dtype=torch.float64)
    colors, alphas, _ = rasterize_torch(*params, viewmats2, Ks2, 32, 24, backgrounds=bg)
    for cam in range(2):
        single, single_alpha, _ = rasterize_torch(
            *params, viewmats2[cam : cam + 1], Ks, 32, 24, backgrounds=bg[cam : cam + 1]
        )
        torch.testing.assert_close(colors[cam], single[0])
        torch.testing.assert_close(alphas[cam], single_alpha[0])
    behind = [params[0] * torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64)] + params[1:]
    empty, empty_alpha, _ = rasterize_torch(*behind, viewmats2, Ks2, 32, 24, backgrounds=bg)
    assert (empty_alpha == 0).all() and torch.equal(empty, bg[:, None, None, :].expand_as(empty))


def test_block_culling_matches_whole_tile_compositing(monkeypatch):
    params = _random_scene(200, seed=19, dtype=torch.float32, spread=(1.0, 0.8))
    viewmats, Ks = _camera(f=60.0, cx=40.0, cy=30.0, dtype=torch.float32)
    blocked, blocked_alphas, _ = rasterize_torch(*params, viewmats, Ks, 80, 60, rasterize_mode="antialiased")
    monkeypatch.setattr(torch_rasterizer, "BLOCK", 16)  # blocks = gsplat's tiles: no ellipse culling
    tiled, tiled_alphas, _ = rasterize_torch(*params, viewmats, Ks, 80, 60, rasterize_mode="antialiased")
    torch.testing.assert_close(blocked, tiled, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(blocked_alphas, tiled_alphas, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kwargs", [{"camera_model": "fisheye"}, {"radius_clip": 1.0}, {"covars": torch.eye(3)}])
def test_gsplat_arguments_that_would_change_the_result_are_refused(kwargs):
    params = _random_scene(2, seed=23, dtype=torch.float32)
    viewmats, Ks = _camera(dtype=torch.float32)
    with pytest.raises(NotImplementedError):
        rasterize_torch(*params, viewmats, Ks, 16, 16, **kwargs)


def test_rasterize_dispatches_to_the_torch_path_on_cpu():
    params = _random_scene(4, seed=13, dtype=torch.float32)
    viewmats, Ks = _camera(f=40.0, cx=16.0, cy=12.0, dtype=torch.float32)
    out, alphas, _ = rasterize(*params, viewmats, Ks, 32, 24, sparse_grad=False, radius_clip=0.0)
    ref, ref_alphas, _ = rasterize_torch(*params, viewmats, Ks, 32, 24)
    assert torch.equal(out, ref) and torch.equal(alphas, ref_alphas)
    with pytest.raises(ValueError, match="packed"):
        rasterize(*params, viewmats, Ks, 32, 24, packed=True)


@pytest.mark.parametrize("absgrad", [False, True])
def test_default_strategy_refines_from_the_torch_info(absgrad):
    torch.manual_seed(42)
    n = 6
    means = torch.tensor([[0.05, 0.03, 2.0]] + [[0.0, 0.0, -2.0]] * (n - 1))  # only the first one is visible
    params = torch.nn.ParameterDict(
        {
            "means": means,
            "scales": torch.log(torch.full((n, 3), 0.005)),
            "quats": torch.randn(n, 4),
            "opacities": torch.logit(torch.full((n,), 0.5)),
            "colors": torch.rand(n, 3),
        }
    )
    optimizers = {k: torch.optim.Adam([p], lr=1e-3) for k, p in params.items()}
    strategy = DefaultStrategy(grow_grad2d=1e-12, absgrad=absgrad, verbose=False)
    strategy.check_sanity(params, optimizers)
    state = strategy.initialize_state(scene_scale=1.0)
    viewmats, Ks = _camera(f=50.0, cx=16.0, cy=12.0, dtype=torch.float32)
    target = torch.zeros(1, 24, 32, 3)

    colors, _, info = rasterize_torch(
        params["means"], params["quats"], torch.exp(params["scales"]), torch.sigmoid(params["opacities"]),
        params["colors"], viewmats, Ks, 32, 24, absgrad=absgrad,
    )  # fmt: skip
    strategy.step_pre_backward(params, optimizers, state, step=600, info=info)
    ((colors - target) ** 2).mean().backward()
    grad = info["means2d"].absgrad if absgrad else info["means2d"].grad
    assert grad.shape == (1, n, 2) and grad[0, 0].abs().sum() > 0 and (grad[0, 1:] == 0).all()
    for optimizer in optimizers.values():
        optimizer.step()
    strategy.step_post_backward(params, optimizers, state, step=600, info=info, packed=False)

    assert len(params["means"]) == n + 1  # the visible, small Gaussian was duplicated
    torch.testing.assert_close(params["means"][-1], params["means"][0])
    for key, param in params.items():
        assert param.shape[0] == n + 1
        adam = optimizers[key].state[optimizers[key].param_groups[0]["params"][0]]
        assert adam["exp_avg"].shape == param.shape and adam["exp_avg_sq"].shape == param.shape
    assert all(v.shape[0] == n + 1 for v in state.values() if isinstance(v, torch.Tensor))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA for gsplat's kernels")
@pytest.mark.parametrize("rasterize_mode", ["classic", "antialiased"])
def test_matches_gsplat_cuda_rasterization(rasterize_mode):
    """On CUDA, rasterize() is gsplat's rasterization; rasterize_torch must give the same images and gradients."""
    params = [p.cuda() for p in _random_scene(300, seed=17, dtype=torch.float32, spread=(1.0, 0.8))]
    sh = torch.randn(300, 4, 3, generator=torch.Generator().manual_seed(0)).cuda() * 0.3
    viewmats, Ks = (t.cuda() for t in _camera(f=60.0, cx=40.0, cy=30.0, dtype=torch.float32))
    bg = torch.tensor([[0.1, 0.2, 0.3]], device="cuda")
    weights = torch.rand(1, 60, 80, 4, device="cuda")
    results = []
    for fn in (rasterize, rasterize_torch):
        inputs = [p.clone().requires_grad_() for p in params[:4] + [sh]]
        out, alphas, info = fn(
            *inputs, viewmats, Ks, 80, 60, sh_degree=1, backgrounds=bg, render_mode="RGB+ED",
            rasterize_mode=rasterize_mode, absgrad=True,
        )  # fmt: skip
        assert ("isect_ids" in info) == (fn is rasterize)  # only gsplat's CUDA path has intersection ids
        info["means2d"].retain_grad()
        ((out * weights).sum() + alphas.sum()).backward()
        results.append([out, alphas, info["means2d"].grad, info["means2d"].absgrad] + [p.grad for p in inputs])
    names = ["colors", "alphas", "means2d.grad", "absgrad", "means", "quats", "scales", "opacities", "sh"]
    for name, ours, theirs in zip(names, results[1], results[0]):
        scale = theirs.abs().max().item()
        torch.testing.assert_close(ours, theirs, rtol=1e-3, atol=1e-3 * scale, msg=lambda m, n=name: f"{n}: {m}")


def test_gsplat_private_torch_reference_keeps_the_signatures_used():
    """rasterize_torch calls private functions of gsplat.cuda._torch_impl (see the module docstring): the parameters
    it passes by name, and the order of those it passes by position, must exist in the installed gsplat."""
    import inspect

    from gsplat.cuda import _torch_impl

    projection = inspect.signature(_torch_impl._fully_fused_projection).parameters
    assert list(projection)[:6] == ["means", "covars", "viewmats", "Ks", "width", "height"]
    assert {"eps2d", "near_plane", "far_plane", "calc_compensations"} <= set(projection)
    covariance = inspect.signature(_torch_impl._quat_scale_to_covar_preci).parameters
    assert list(covariance)[:2] == ["quats", "scales"] and {"compute_covar", "compute_preci", "triu"} <= set(covariance)
    sh = inspect.signature(_torch_impl._spherical_harmonics).parameters
    assert len(sh) == 3 and list(sh)[1:] == ["dirs", "coeffs"]  # (degree, dirs, coeffs), called positionally
