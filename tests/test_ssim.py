"""splat_core.ssim.FastSSIM against pytorch_msssim.SSIM (what splatfacto trains with): values and gradients."""

from __future__ import annotations

import warnings

import pytest
import torch

from splat_core.ssim import FastSSIM, gaussian_window, ssim

pytorch_msssim = pytest.importorskip("pytorch_msssim")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _pair(shape, seed=0, noise=0.1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g)
    y = (x + noise * torch.randn(shape, generator=g)).clamp(0, 1)
    return x, y


def test_window_is_pytorch_msssims():
    from pytorch_msssim.ssim import _fspecial_gauss_1d

    ref = _fspecial_gauss_1d(11, 1.5).flatten()
    torch.testing.assert_close(gaussian_window(11, 1.5), ref, rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(1, 3, 48, 64), (2, 3, 31, 17), (1, 1, 11, 11), (1, 3, 96, 53)])
def test_values_match_pytorch_msssim(shape):
    x, y = _pair(shape, seed=sum(shape))
    ref = pytorch_msssim.SSIM(data_range=1.0, size_average=True, channel=shape[1])(x, y)
    ours = FastSSIM(data_range=1.0, size_average=True, channel=shape[1])(x, y)
    assert ref.item() < 0.99  # a real difference between the images, not the trivial 1
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)


def test_per_image_values_and_identity():
    x, y = _pair((3, 3, 40, 40), seed=3, noise=0.3)
    ref = pytorch_msssim.SSIM(data_range=1.0, size_average=False, channel=3)(x, y)
    ours = FastSSIM(data_range=1.0, size_average=False)(x, y)
    assert ours.shape == (3,)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(FastSSIM(data_range=1.0)(x, x), torch.tensor(1.0), rtol=0, atol=1e-6)


@pytest.mark.parametrize("shape", [(4, 3, 24, 32), (10, 3, 11, 40)])
def test_per_view_values_match_pytorch_msssims_function(shape):
    """FastGS's score views (splat_core.view_scoring) take one SSIM per view, as pytorch_msssim.ssim(...,
    size_average=False) gave them: each view its own value, whatever the other views in the batch."""
    x, y = _pair(shape, seed=shape[0], noise=0.2)
    y[0] = x[0]  # one identical view among different ones
    ref = pytorch_msssim.ssim(x, y, data_range=1.0, size_average=False)
    ours = FastSSIM(data_range=1.0, size_average=False)(x, y)
    assert ours.shape == (shape[0],) and ref[1:].max() < 0.99
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(ours[1:2], FastSSIM(data_range=1.0, size_average=False)(x[1:2], y[1:2]))


def test_gradients_match_pytorch_msssim():
    x, y = _pair((1, 3, 45, 60), seed=7)
    grads = []
    for module in (pytorch_msssim.SSIM(data_range=1.0, size_average=True, channel=3), FastSSIM(data_range=1.0)):
        xr, yr = x.clone().requires_grad_(), y.clone().requires_grad_()
        (1 - module(xr, yr)).backward()
        grads.append((xr.grad, yr.grad))
    (ref_x, ref_y), (ours_x, ours_y) = grads
    assert ref_y.abs().max() > 1e-4  # the loss does depend on the render
    torch.testing.assert_close(ours_x, ref_x, rtol=0, atol=1e-5 * ref_x.abs().max().item())
    torch.testing.assert_close(ours_y, ref_y, rtol=0, atol=1e-5 * ref_y.abs().max().item())


def test_axis_shorter_than_window_is_not_blurred_like_pytorch_msssim():
    x, y = _pair((1, 3, 8, 30), seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pytorch_msssim.SSIM(data_range=1.0, channel=3)(x, y)
    with pytest.warns(UserWarning, match="Skipping Gaussian Smoothing"):
        ours = FastSSIM(data_range=1.0)(x, y)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)


def test_data_range_and_dtype():
    x, y = _pair((1, 3, 32, 32), seed=5)
    ref = pytorch_msssim.SSIM(data_range=255, channel=3)(x * 255, y * 255)
    torch.testing.assert_close(FastSSIM()(x * 255, y * 255), ref, rtol=0, atol=1e-5)  # pytorch_msssim's default 255
    double = FastSSIM(data_range=1.0)(x.double(), y.double())
    assert double.dtype == torch.float64
    torch.testing.assert_close(double.float(), FastSSIM(data_range=1.0)(x, y), rtol=0, atol=1e-5)


def test_errors():
    x = torch.rand(1, 3, 20, 20)
    with pytest.raises(ValueError, match="same dimensions"):
        FastSSIM(data_range=1.0)(x, x[..., :19])
    with pytest.raises(ValueError, match="4-d"):
        FastSSIM(data_range=1.0)(x[0], x[0])
    with pytest.raises(ValueError, match="odd"):
        ssim(x, x, gaussian_window(10, 1.5))


def test_window_stays_out_of_the_state_dict():
    module = FastSSIM(data_range=1.0)
    assert module.state_dict() == {}
    assert pytorch_msssim.SSIM(data_range=1.0).state_dict() == {}
