"""pixel_coverage: the share of pixels under an error bound, on images with known errors."""

import pytest
import torch

from splat_core.metrics import pixel_coverage


def test_coverage_counts_pixels_under_the_threshold():
    gt = torch.full((4, 6, 3), 0.5)
    pred = gt.clone()
    pred[:1] += 0.05  # 6 pixels: error 0.05, covered
    pred[1:3, :, 0] += 0.6  # 12 pixels: one channel off by 0.6, mean error 0.2, not covered
    pred[3, :2] = float("nan")  # 2 pixels: NaN, not covered
    assert pixel_coverage(pred, gt) == pytest.approx((6 + 4) / 24)
    assert pixel_coverage(pred, gt, threshold=0.25) == pytest.approx((6 + 12 + 4) / 24)
    assert pixel_coverage(gt, gt) == 1.0


def test_coverage_rejects_mismatched_images():
    with pytest.raises(ValueError, match="one shape"):
        pixel_coverage(torch.zeros(4, 6, 3), torch.zeros(4, 5, 3))
    with pytest.raises(ValueError, match="H, W, 3"):
        pixel_coverage(torch.zeros(4, 6, 4), torch.zeros(4, 6, 4))
