"""FMGSField on CPU: output shapes, unit-norm CLIP head, contraction values, chunking, gradients."""

import math

import pytest
import torch

from fmgs_field.field import FMGSField, FMGSFieldConfig, FMGSFieldHeadNames, contract
from fmgs_field.testing.tiny import tiny_fmgs_field


def test_default_field_shapes_and_unit_norm_clip():
    torch.manual_seed(42)
    field = FMGSFieldConfig().setup()
    assert isinstance(field, FMGSField)
    assert field.implementation in ("torch", "tcnn")
    assert field.encoding_dim == 2 * 12 * 8
    positions = torch.randn(257, 3) * 3.0  # inside and outside the unit ball
    out = field(positions)
    assert out[FMGSFieldHeadNames.CLIP].shape == (257, 512)
    assert out[FMGSFieldHeadNames.DINO].shape == (257, 384)
    assert out[FMGSFieldHeadNames.HASHGRID].shape == (257, 192)
    norms = out[FMGSFieldHeadNames.CLIP].norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones(257), rtol=0, atol=1e-5)
    # The head layout of the official code: 4 hidden layers for CLIP, 1 for DINO, 256 wide.
    assert field.clip_head.num_layers == 5 and field.dino_head.num_layers == 2
    assert field.clip_head.layer_width == 256


def test_parameter_count_is_fixed_by_config_not_by_points():
    field = tiny_fmgs_field(dino_dim=12).setup()
    n_params = sum(p.numel() for p in field.parameters())
    hash_entries = sum(2 * (2**10) * 4 for _ in range(2))  # levels * table * features per grid
    assert n_params > hash_entries
    for n in (1, 100, 5000):
        out = field(torch.rand(n, 3))
        assert out[FMGSFieldHeadNames.CLIP].shape == (n, 16)
    assert sum(p.numel() for p in field.parameters()) == n_params


def test_contraction_values():
    x = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [3.0, 0.0, 0.0], [0.0, -4.0, 0.0], [1e6, 0.0, 0.0]])
    expected = torch.tensor(
        [
            [0.5, 0.5, 0.5],
            [0.625, 0.5, 0.5],  # (0.5 + 2) / 4
            [11 / 12, 0.5, 0.5],  # (2 - 1/3) = 5/3 -> (5/3 + 2) / 4
            [0.5, (-(2 - 1 / 4) + 2) / 4, 0.5],
            [1.0, 0.5, 0.5],
        ]
    )
    torch.testing.assert_close(contract(x), expected, rtol=0, atol=1e-6)
    # L2: a point on the diagonal at norm 2 maps to norm 1.5 before the shift.
    d = torch.full((1, 3), 2 / math.sqrt(3))
    torch.testing.assert_close((contract(d) * 4 - 2).norm(dim=-1), torch.tensor([1.5]))
    # L_inf: (2, 1, 0) has inf-norm 2 -> (2 - 1/2) * (1, 0.5, 0).
    y = contract(torch.tensor([[2.0, 1.0, 0.0]]), order=float("inf"))
    torch.testing.assert_close(y * 4 - 2, torch.tensor([[1.5, 0.75, 0.0]]))
    field = tiny_fmgs_field(dino_dim=12, contraction_order="linf").setup()
    torch.testing.assert_close(field.contract(torch.tensor([[2.0, 1.0, 0.0]])), y)


def test_chunked_forward_matches_and_gradients_reach_the_hash_tables():
    torch.manual_seed(0)
    field = tiny_fmgs_field(dino_dim=12).setup()
    positions = torch.randn(300, 3)
    full = field(positions)
    with torch.no_grad():
        chunked = field(positions, chunk_size=64)
    for key in (FMGSFieldHeadNames.CLIP, FMGSFieldHeadNames.DINO):
        torch.testing.assert_close(chunked[key], full[key].detach())
    loss = full[FMGSFieldHeadNames.CLIP].sum() + full[FMGSFieldHeadNames.DINO].pow(2).sum()
    loss.backward()
    for grid in field.grids:
        assert grid.hash_table.grad is not None and grid.hash_table.grad.abs().sum() > 0


def test_mismatched_grid_config_raises():
    with pytest.raises(ValueError):
        FMGSFieldConfig(grid_levels=(12,), grid_resolutions=((16, 128), (128, 512)), log2_hashmap_sizes=(19,)).setup()
