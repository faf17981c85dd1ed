"""FMGS language field: multi-resolution hash grids over contracted Gaussian means, with CLIP and DINO heads.

FMGS (Zuo et al., "FMGS: Foundation Model Embedded 3D Gaussian Splatting for Holistic 3D Scene Understanding",
arXiv 2401.01970) does not store a language vector per Gaussian. It queries a hash-grid field at each Gaussian's
mean, so the trainable memory is the hash tables plus two small MLPs, whatever the number N of Gaussians.

Defaults follow the official code (googlestaging/foundation-model-embedded-3dgs, ``lerf/lerf.py``
``LERFModelConfig`` and ``lerf/lerf_field.py``): two grids of 12 levels with resolutions 16-128 and 128-512,
``log2_hashmap_size`` 19, 8 features per level; a CLIP head with 4 hidden layers of 256 ReLU units and a DINO
head with 1 hidden layer of 256 units (tcnn ``n_hidden_layers``); the Mip-NeRF 360 contraction with the L2 norm,
then ``(x + 2) / 4`` into [0, 1]^3.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Dict, Literal, Optional, Tuple, Type

import torch
import torch.nn.functional as F
from jaxtyping import Float
from nerfstudio.configs.base_config import InstantiateConfig
from nerfstudio.field_components.encodings import HashEncoding
from nerfstudio.field_components.mlp import MLP
from nerfstudio.field_components.spatial_distortions import SceneContraction
from nerfstudio.utils.external import TCNN_EXISTS
from torch import Tensor, nn


class FMGSFieldHeadNames(Enum):
    """Outputs of :class:`FMGSField` (as LERF's lerf/lerf_fieldheadnames.py names its own)."""

    HASHGRID = "hashgrid"
    CLIP = "clip"
    DINO = "dino"


def contract(
    positions: Float[Tensor, "*bs 3"],
    order: Optional[float] = None,
) -> Float[Tensor, "*bs 3"]:
    """Mip-NeRF 360 contraction mapped into the unit cube, the input the hash grids expect.

    ``x`` with ``||x|| < 1`` stays; otherwise ``x -> (2 - 1/||x||) x/||x||`` (nerfstudio's ``SceneContraction``). The
    result lies in the ball (``order=None``) or cube (``order=inf``) of radius 2 and is mapped by ``(c + 2) / 4`` into
    [0, 1]^3, as in FMGS's ``LERFField.get_outputs``. Example: ``0 -> 0.5``; ``(3, 0, 0) -> (11/12, 1/2, 1/2)``.

    Args:
        positions: Points in scene coordinates (Gaussian means). [..., 3]
        order: Norm order passed to ``torch.linalg.norm``: None (L2, FMGS) or ``float("inf")``.

    Returns:
        Contracted points in [0, 1]^3. [..., 3]
    """
    return (SceneContraction(order=order)(positions) + 2.0) / 4.0


@dataclass
class FMGSFieldConfig(InstantiateConfig):
    """Configuration of :class:`FMGSField`."""

    _target: Type = field(default_factory=lambda: FMGSField)
    grid_levels: Tuple[int, ...] = (12, 12)
    """Number of levels of each hash grid (FMGS: two grids of 12)."""
    grid_resolutions: Tuple[Tuple[int, int], ...] = ((16, 128), (128, 512))
    """(coarsest, finest) resolution of each grid, in cells per unit of the [0, 1] cube."""
    log2_hashmap_sizes: Tuple[int, ...] = (19, 19)
    """log2 of the number of hash-table entries per level of each grid."""
    features_per_level: int = 8
    """Features stored per hash-table entry."""
    hash_init_scale: float = 0.001
    """Hash entries start uniform in [-scale, scale] (nerfstudio's default; torch implementation only)."""
    hidden_width: int = 256
    """Width of the hidden layers of both heads."""
    clip_hidden_layers: int = 4
    """Hidden layers of the CLIP head."""
    dino_hidden_layers: int = 1
    """Hidden layers of the DINO head."""
    clip_dim: int = 512
    """Output size of the CLIP head (512 for OpenCLIP ViT-B-16)."""
    dino_dim: int = 384
    """Output size of the DINO head (384 for DINO ViT-S/8)."""
    contraction_order: Literal["l2", "linf"] = "l2"
    """Norm of the scene contraction: "l2" (ball of radius 2, as FMGS) or "linf" (cube of side 4)."""
    implementation: Literal["auto", "tcnn", "torch"] = "auto"
    """Hash-grid/MLP backend: "auto" uses tiny-cuda-nn when importable, else nerfstudio's pure-torch code."""


class FMGSField(nn.Module):
    """Hash-grid field queried at Gaussian means, with a unit-norm CLIP head and a DINO head.

    .. note::
        Memory is independent of N. The parameters are the hash tables, at most
        ``sum_g levels_g * 2**log2_hashmap_size_g * features_per_level`` floats (about 100M, 403 MB in fp32, with the
        defaults; tiny-cuda-nn stores fewer entries for coarse levels) plus the MLP heads (about 0.5M). That is a
        per-scene constant, where LangSplat-style per-Gaussian embeddings grow as ``N * 512``. Activations of a forward
        pass are O(N); pass ``chunk_size`` to :meth:`forward` to bound them when no gradient is needed.

    Args:
        config (FMGSFieldConfig): Grid and head sizes.
    """

    def __init__(self, config: FMGSFieldConfig) -> None:
        super().__init__()
        n_grids = len(config.grid_levels)
        if not (len(config.grid_resolutions) == len(config.log2_hashmap_sizes) == n_grids):
            raise ValueError("grid_levels, grid_resolutions and log2_hashmap_sizes must have the same length")
        self.config = config
        impl = config.implementation
        if impl == "auto":
            impl = "tcnn" if TCNN_EXISTS else "torch"
        self.implementation = impl
        self.grids = nn.ModuleList(
            HashEncoding(
                num_levels=levels,
                min_res=res[0],
                max_res=res[1],
                log2_hashmap_size=log2_size,
                features_per_level=config.features_per_level,
                hash_init_scale=config.hash_init_scale,
                implementation=impl,
            )
            for levels, res, log2_size in zip(config.grid_levels, config.grid_resolutions, config.log2_hashmap_sizes)
        )
        self.encoding_dim = sum(grid.get_out_dim() for grid in self.grids)
        self.clip_head = MLP(
            in_dim=self.encoding_dim,
            num_layers=config.clip_hidden_layers + 1,
            layer_width=config.hidden_width,
            out_dim=config.clip_dim,
            activation=nn.ReLU(),
            out_activation=None,
            implementation=impl,
        )
        self.dino_head = MLP(
            in_dim=self.encoding_dim,
            num_layers=config.dino_hidden_layers + 1,
            layer_width=config.hidden_width,
            out_dim=config.dino_dim,
            activation=nn.ReLU(),
            out_activation=None,
            implementation=impl,
        )
        self._order = None if config.contraction_order == "l2" else float("inf")

    def contract(self, positions: Float[Tensor, "*bs 3"]) -> Float[Tensor, "*bs 3"]:
        """:func:`contract` with this field's norm order.

        Args:
            positions: Points in scene coordinates. [..., 3]

        Returns:
            Points in [0, 1]^3. [..., 3]
        """
        return contract(positions, order=self._order)

    def encode(self, positions: Float[Tensor, "N 3"]) -> Float[Tensor, "N E"]:
        """Concatenated hash-grid features of contracted positions.

        Args:
            positions: Points in scene coordinates. [N, 3]

        Returns:
            Grid features, ``E = sum(levels) * features_per_level``. [N, E]
        """
        x = self.contract(positions.reshape(-1, 3)).clamp(0.0, 1.0)
        return torch.cat([grid(x).float() for grid in self.grids], dim=-1)

    def _forward(self, positions: Tensor) -> Dict[FMGSFieldHeadNames, Tensor]:  # [N, 3]
        h = self.encode(positions)
        clip = F.normalize(self.clip_head(h).float(), dim=-1, eps=1e-6)
        dino = self.dino_head(h).float()
        return {FMGSFieldHeadNames.HASHGRID: h, FMGSFieldHeadNames.CLIP: clip, FMGSFieldHeadNames.DINO: dino}

    def forward(
        self,
        positions: Float[Tensor, "N 3"],
        chunk_size: Optional[int] = None,
    ) -> Dict[FMGSFieldHeadNames, Float[Tensor, "N dim"]]:
        """Field outputs at ``positions`` (the Gaussian means).

        Args:
            positions: Points in scene coordinates. [N, 3]
            chunk_size: If set, evaluate at most this many points at a time (bounds activation memory; meant for
                ``torch.no_grad()`` evaluation, since autograd keeps every chunk's activations anyway).

        Returns:
            ``{HASHGRID: [N, E], CLIP: [N, clip_dim] (unit L2 norm), DINO: [N, dino_dim]}``.
        """
        if chunk_size is None or positions.shape[0] <= chunk_size:
            return self._forward(positions)
        parts = [self._forward(chunk) for chunk in torch.split(positions, chunk_size)]
        return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}
