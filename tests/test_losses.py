"""splat_core.losses: splatfacto's photometric loss, eager on CPU and as CUDA graphs on CUDA."""

from __future__ import annotations

import pytest
import torch
from pytorch_msssim import SSIM

from splat_core.losses import PhotometricLoss, photometric_loss
from splat_core.ssim import FastSSIM


def _images(h: int, w: int, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(h, w, 3, generator=g)
    pred = (gt + 0.2 * torch.randn(h, w, 3, generator=g)).clamp(0, 1)
    return pred.to(device).requires_grad_(True), gt.to(device)


def test_loss_is_splatfactos_formula():
    """(1 - 0.2) L1 + 0.2 (1 - SSIM) with pytorch_msssim's SSIM, value and gradient."""
    pred, gt = _images(40, 52, "cpu")
    loss = PhotometricLoss(FastSSIM(data_range=1.0), 0.2)(pred, gt)
    ref_pred = pred.detach().clone().requires_grad_(True)
    ssim = SSIM(data_range=1.0, size_average=True, channel=3)
    ref = 0.8 * (gt - ref_pred).abs().mean() + 0.2 * (1 - ssim(gt.permute(2, 0, 1)[None], ref_pred.permute(2, 0, 1)[None]))
    torch.testing.assert_close(loss, ref, rtol=1e-6, atol=1e-7)
    loss.backward()
    ref.backward()
    torch.testing.assert_close(pred.grad, ref_pred.grad, rtol=1e-4, atol=1e-8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graphs_give_the_eager_loss_and_gradient():
    """Replays at two sizes, alternating, against eager runs of the same inputs; one graph per size."""
    ssim = FastSSIM(data_range=1.0).cuda()
    graphed = PhotometricLoss(ssim, 0.2)
    for step in range(6):
        h, w = (36, 48) if step % 2 else (72, 96)
        pred, gt = _images(h, w, "cuda", seed=step)
        gt = gt.permute(1, 0, 2).contiguous().permute(1, 0, 2) if step >= 4 else gt  # strided, as a resized target
        upstream = pred * 1.5  # a graph input that is not a leaf, as the render is
        loss = graphed(upstream, gt)
        loss.backward()
        ref_pred = pred.detach().clone().requires_grad_(True)
        ref = photometric_loss(ref_pred * 1.5, gt, ssim, 0.2)
        ref.backward()
        torch.testing.assert_close(loss, ref, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(pred.grad, ref_pred.grad, rtol=1e-5, atol=1e-9)
    assert graphed.cuda_graphs and sorted(graphed.captured_sizes) == [[36, 48, 3], [72, 96, 3]]
    with torch.no_grad():  # no gradient wanted: eager, no new graph
        pred, gt = _images(20, 20, "cuda")
        graphed(pred, gt)
    assert len(graphed.captured_sizes) == 2
