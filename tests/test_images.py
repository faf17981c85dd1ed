"""Tests for splat_core.images (dtype conversions through torchvision)."""

import numpy as np
import pytest
import torch
from PIL import Image

from splat_core.images import to_float_image, to_pil_image, to_uint8_image


def test_round_trip_uint8_float_uint8_is_exact():
    u = torch.randint(0, 256, (7, 9, 3), dtype=torch.uint8)
    f = to_float_image(u)
    assert f.dtype == torch.float32 and f.shape == (7, 9, 3)
    torch.testing.assert_close(f, u.float() / 255.0)
    assert torch.equal(to_uint8_image(f), u)


def test_float_inputs_are_clamped_rounded_and_alpha_dropped():
    x = torch.tensor([[[-0.5, 0.5 / 255 + 1e-4, 2.0, 0.3]]])
    assert to_uint8_image(x).tolist() == [[[0, 1, 255]]]
    assert to_float_image(torch.tensor([[[float("nan"), 0.2, 1.5]]])).flatten().tolist() == pytest.approx([0.0, 0.2, 1.0])


def test_grey_arrays_and_pil_images():
    grey = np.full((4, 5), 128, dtype=np.uint8)
    assert to_uint8_image(grey).shape == (4, 5, 3)
    pil = to_pil_image(torch.rand(4, 5, 3))
    assert isinstance(pil, Image.Image) and pil.size == (5, 4) and pil.mode == "RGB"
    assert torch.equal(to_uint8_image(pil), torch.from_numpy(np.array(pil)))


def test_bad_shape_is_a_value_error():
    with pytest.raises(ValueError, match="shape"):
        to_float_image(torch.zeros(2, 3, 5))
