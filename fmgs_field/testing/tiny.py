"""Tiny random teachers of the real architectures, written to disk so configs can point at them by path, and a small
field config.

For offline tests and benchmarks only: an OpenCLIP ViT with one block (real BPE tokenizer, random weights) and a
transformers ``ViTModel`` with patch size 8 (the DINO ViT-S/8 layout), both random. Their features carry no meaning,
but every code path (tiling, caching, text encoding, distillation, relevancy) runs as with the real weights.
``clip_dim=512, dino_dim=384`` gives the real channel counts, so field and rasterisation costs match the real method.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Tuple, Union

import open_clip
import torch

from fmgs_field.field import FMGSFieldConfig
from fmgs_field.teachers.clip_teacher import CLIPTeacherConfig
from fmgs_field.teachers.dino_teacher import DINOTeacherConfig


def write_tiny_clip(
    folder: Union[str, Path],
    clip_dim: int = 16,
    seed: int = 0,
    name: Optional[str] = None,
    weights_name: str = "tiny_clip.pt",
    **settings: Any,
) -> CLIPTeacherConfig:
    """Writes a random one-block OpenCLIP ViT (32 px input, 16 px patches, real 49,408-token text tower) and returns
    a teacher config that loads it by path.

    Files: ``<name>.json`` (the OpenCLIP architecture, also registered with OpenCLIP in this process) and
    ``weights_name`` (the state dict).

    Args:
        folder: Output folder (created).
        clip_dim: Embedding size.
        seed: torch seed of the random weights (the same seed and size give the same weights whatever the name).
        name: OpenCLIP model name (default ``fmgs-tiny-clip-<clip_dim>``).
        weights_name: File name of the weights (the teacher's ``name`` and feature-cache folder use its stem).
        settings: Further ``CLIPTeacherConfig`` fields (pyramid, batch size, ...).

    Returns:
        ``CLIPTeacherConfig`` with ``model_name``, ``model_config_file`` and ``pretrained`` set.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = name or f"fmgs-tiny-clip-{clip_dim}"
    arch = {
        "embed_dim": clip_dim,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    arch_file = folder / f"{name}.json"
    arch_file.write_text(json.dumps(arch))
    open_clip.add_model_config(arch_file)
    torch.manual_seed(seed)
    torch.save(open_clip.create_model(name, pretrained=None).state_dict(), folder / weights_name)
    return CLIPTeacherConfig(
        model_name=name, model_config_file=arch_file, pretrained=str(folder / weights_name), **settings
    )


def write_tiny_teachers(
    folder: Union[str, Path],
    clip_dim: int = 16,
    dino_dim: int = 24,
    seed: int = 0,
) -> Tuple[CLIPTeacherConfig, DINOTeacherConfig]:
    """Writes random tiny CLIP and DINO teachers under ``folder`` and returns configs that load them.

    Files: those of :func:`write_tiny_clip` (``fmgs-tiny-clip-<clip_dim>.json``, ``tiny_clip.pt``) and
    ``tiny_dino/`` (a ``ViTModel`` folder). The configs use small pyramids (2 scales, tiles of 0.25-0.5 of the image)
    and a DINO ``load_size`` of 64, so CPU runs stay fast.

    Args:
        folder: Output folder (created).
        clip_dim: CLIP embedding size.
        dino_dim: DINO hidden size (6 attention heads when it divides by 6, as ViT-S/8).
        seed: Seed of the random weights.

    Returns:
        ``(clip_config, dino_config)``.
    """
    folder = Path(folder)
    clip = write_tiny_clip(folder, clip_dim, seed, num_scales=2, min_tile=0.25, max_tile=0.5)
    from transformers import ViTConfig, ViTModel

    heads = next(h for h in (6, 4, 2, 1) if dino_dim % h == 0)  # ViT-S/8 has 6 heads
    vit = ViTConfig(
        hidden_size=dino_dim,
        num_hidden_layers=1,
        num_attention_heads=heads,
        intermediate_size=2 * dino_dim,
        patch_size=8,
        image_size=64,
    )
    ViTModel(vit, add_pooling_layer=False).save_pretrained(folder / "tiny_dino")
    dino = DINOTeacherConfig(backend="transformers", pretrained=str(folder / "tiny_dino"), layer=-1, load_size=64)
    return clip, dino


def tiny_fmgs_field(**overrides: Any) -> FMGSFieldConfig:
    """A small torch-backend FMGS field config (CLIP 16-d, DINO 24-d) for CPU tests; ``overrides`` replace fields."""
    small = dict(
        grid_levels=(2, 2),
        grid_resolutions=((4, 8), (8, 16)),
        log2_hashmap_sizes=(10, 10),
        features_per_level=4,
        hidden_width=32,
        clip_dim=16,
        dino_dim=24,
        implementation="torch",
    )
    return FMGSFieldConfig(**(small | overrides))


__all__ = ["tiny_fmgs_field", "write_tiny_clip", "write_tiny_teachers"]
