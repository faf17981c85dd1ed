"""DINO ViT-S/8 teacher: dense patch descriptors (the "key" facet of the last block), via timm or transformers.

FMGS's ``DinoDataloader`` (googlestaging/foundation-model-embedded-3dgs, ``lerf/data/utils/dino_dataloader.py``,
after ShirAmir/dino-vit-features' ``ViTExtractor``) uses ``dino_vits8`` with stride 8, ``load_size = 500``
(shorter image side), layer 11, facet ``key``, no log binning, ImageNet mean/std: one 384-d descriptor per 8x8 patch,
the keys of all 6 heads concatenated in ``(head_dim, head)`` order, class token dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Literal, Optional, Tuple, Type

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from fmgs_field.teachers.base import (
    FeatureTeacher,
    FeatureTeacherConfig,
    MissingWeightsError,
    normalize_image,
)
from splat_core.images import to_float_image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class DINOTeacherConfig(FeatureTeacherConfig):
    """Configuration of :class:`DINOTeacher`."""

    _target: Type = field(default_factory=lambda: DINOTeacher)
    backend: Literal["timm", "transformers"] = "timm"
    """Library that builds the ViT: "timm" (architecture ``model_name``) or "transformers" (``ViTModel``)."""
    model_name: str = "vit_small_patch8_224_dino"
    """timm architecture (timm backend only; transformers reads the architecture from the checkpoint)."""
    pretrained: str = "vit_small_patch8_224_dino"
    """Weights. timm: a state-dict file, or a timm DINO model name whose checkpoint is in the torch hub cache.
    transformers: a local folder, or a Hub id (e.g. facebook/dino-vits8) already in the Hugging Face cache."""
    load_size: int = 500
    """Images are resized so that their shorter side has this many pixels (0 keeps the size)."""
    layer: int = 11
    """Transformer block the descriptors come from (negative counts from the end)."""
    facet: Literal["key", "token"] = "key"
    """"key": attention keys of ``layer`` (FMGS); "token": output tokens of ``layer``."""


def dino_feature_map(
    image: Float[Tensor, "H W 3"],
    extractor: Callable[[Tensor], Tensor],
    load_size: int = 500,
    mean: Tuple[float, ...] = IMAGENET_MEAN,
    std: Tuple[float, ...] = IMAGENET_STD,
) -> Float[Tensor, "h w D"]:
    """Dense DINO descriptors of one image.

    The image is resized so that its shorter side is ``load_size`` (longer side ``int(load_size * long / short)``, as
    torchvision's ``Resize(int)``), standardised, and passed to ``extractor``. With a patch-8 ViT the map is
    ``h = H' // 8`` by ``w = W' // 8`` for the resized size ``(H', W')``, e.g. 62 x 84 for a 738 x 994 image.

    Args:
        image: RGB image in [0, 1]. [H, W, 3]
        extractor: Network call, ``[1, 3, H', W'] -> [1, h, w, D]`` (e.g. ``DINOTeacher.extract``).
        load_size: Shorter side after resizing; 0 keeps the size.
        mean: Per-channel mean.
        std: Per-channel standard deviation.

    Returns:
        Descriptor map. [h, w, D]
    """
    height, width = image.shape[:2]
    size = None
    if load_size:
        if height <= width:
            size = (load_size, int(load_size * width / height))
        else:
            size = (int(load_size * height / width), load_size)
    x = normalize_image(image.permute(2, 0, 1)[None].float(), mean, std, size)
    return extractor(x)[0]


def _interp_pos_embed(pos: Tensor, h: int, w: int) -> Tensor:  # [1, N, D] -> [1, h*w, D]
    n = pos.shape[1]
    side = int(round(n**0.5))
    if side * side != n:
        raise ValueError(f"position embedding of {n} tokens is not square")
    if (side, side) == (h, w):
        return pos
    grid = pos.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(1, h * w, -1)


def _heads_last(keys: Tensor, num_heads: int) -> Tensor:  # [B, t, D] head-major -> [B, t, D] (head_dim, head)
    b, t, d = keys.shape
    return keys.reshape(b, t, num_heads, d // num_heads).permute(0, 1, 3, 2).reshape(b, t, d)


def _load_state_dict(path: Path) -> Dict[str, Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    for key in ("teacher", "model", "state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    prefixes = ("module.", "backbone.")
    return {next((k[len(p) :] for p in prefixes if k.startswith(p)), k): v for k, v in state.items()}


def resolve_timm_weights(config: DINOTeacherConfig) -> Path:
    """Checkpoint file for the timm backend: ``pretrained`` itself, or a timm model's file in the torch hub cache.

    Raises:
        MissingWeightsError: No local file; the message names ``DINOTeacherConfig.pretrained``.
    """
    path = Path(config.pretrained).expanduser()
    if path.is_file():
        return path
    looked = []
    try:
        from timm.models import get_pretrained_cfg

        cfg = get_pretrained_cfg(config.pretrained)
    except Exception:  # unknown name, or a timm without this helper
        cfg = None
    url = (cfg or {}).get("url", "") if isinstance(cfg, dict) else getattr(cfg, "url", "")
    if url:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
        if cached.is_file():
            return cached
        looked.append(str(cached))
    raise MissingWeightsError(
        f"DINOTeacherConfig.pretrained (= {config.pretrained!r}) is not a local file"
        + (f" and its checkpoint is not cached at {looked[0]}" if looked else " nor a timm model name")
        + ". Point it at a DINO ViT-S/8 state dict (e.g. dino_deitsmall8_pretrain.pth)."
    )


def _build_network(config: DINOTeacherConfig) -> nn.Module:
    if config.backend == "timm":
        import timm

        path = resolve_timm_weights(config)
        model = timm.create_model(config.model_name, pretrained=False, num_classes=0)
        missing, _ = model.load_state_dict(_load_state_dict(path), strict=False)
        missing = [k for k in missing if not k.startswith(("head", "fc_norm"))]
        if missing:
            raise ValueError(f"DINOTeacherConfig.pretrained ({path}) lacks {len(missing)} weights, e.g. {missing[:3]}")
        return model
    from transformers import ViTModel

    try:
        return ViTModel.from_pretrained(config.pretrained, add_pooling_layer=False, local_files_only=True)
    except (OSError, ValueError) as err:
        raise MissingWeightsError(
            f"DINOTeacherConfig.pretrained (= {config.pretrained!r}) is neither a local ViT folder nor a cached "
            f"Hugging Face id ({err.__class__.__name__}). Point it at a folder saved with save_pretrained."
        ) from err


class DINOTeacher(FeatureTeacher):
    """DINO ViT teacher producing dense descriptor maps (FMGS: ViT-S/8, 384-d keys of block 11).

    Args:
        config (DINOTeacherConfig): Backend, weights and extraction settings.
        network (nn.Module, optional): An already built network of the backend's type (a timm ``VisionTransformer``
            or a transformers ``ViTModel``); skips loading. Tests pass a tiny random one. Default is None.
    """

    config: DINOTeacherConfig

    def __init__(self, config: DINOTeacherConfig, network: Optional[nn.Module] = None) -> None:
        super().__init__(config)
        self._set_network(network if network is not None else _build_network(config))
        net = self.network
        if config.backend == "timm":
            if getattr(net, "num_prefix_tokens", 1) != 1 or getattr(net, "no_embed_class", False):
                raise ValueError("timm backend expects a ViT with one class token inside the position embedding")
            self._blocks = list(net.blocks)
            patch = net.patch_embed.proj.kernel_size
            self._num_heads = self._blocks[0].attn.num_heads
            self._dim = net.embed_dim
        else:
            self._blocks = list(getattr(net, "layers", None) or net.encoder.layer)
            patch = net.config.patch_size
            self._num_heads = net.config.num_attention_heads
            self._dim = net.config.hidden_size
        self.patch_size = int(patch[0] if isinstance(patch, (tuple, list)) else patch)
        n = len(self._blocks)
        self.layer = config.layer + n if config.layer < 0 else config.layer
        if not 0 <= self.layer < n:
            raise ValueError(f"DINOTeacherConfig.layer={config.layer} is out of range for a ViT of {n} blocks")

    @property
    def name(self) -> str:
        """``dino_<backend>_<weights stem>_<facet><layer>``."""
        return f"dino_{self.config.backend}_{Path(self.config.pretrained).stem}_{self.config.facet}{self.layer}"

    @property
    def feature_dim(self) -> int:
        """Descriptor size (384 for ViT-S)."""
        return self._dim

    def fingerprint(self) -> Dict[str, Any]:
        """Backend, weights and extraction settings."""
        c = self.config
        return {
            "teacher": "dino",
            "backend": c.backend,
            "model": c.model_name if c.backend == "timm" else "ViTModel",
            "pretrained": c.pretrained,
            "load_size": c.load_size,
            "layer": self.layer,
            "facet": c.facet,
        }

    @torch.no_grad()
    def extract(self, x: Float[Tensor, "B 3 H W"]) -> Float[Tensor, "B h w D"]:
        """Descriptors of standardised images, class token dropped.

        Args:
            x: Standardised images; sizes need not be multiples of the patch. [B, 3, H, W]

        Returns:
            One descriptor per patch, ``h = H // patch``, ``w = W // patch``. [B, h, w, D]
        """
        x = x.to(self.device, torch.float32)
        h, w = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        tokens = self._extract_timm(x, h, w) if self.config.backend == "timm" else self._extract_hf(x)
        return tokens[:, 1:].reshape(x.shape[0], h, w, -1)

    def _extract_timm(self, x: Tensor, h: int, w: int) -> Tensor:  # [B, 3, H, W] -> [B, 1 + h*w, D]
        net = self.network
        patches = net.patch_embed.norm(net.patch_embed.proj(x).flatten(2).transpose(1, 2))
        pos = torch.cat([net.pos_embed[:, :1], _interp_pos_embed(net.pos_embed[:, 1:], h, w)], dim=1)
        tokens = net.pos_drop(torch.cat([net.cls_token.expand(x.shape[0], -1, -1), patches], dim=1) + pos)
        for block in self._blocks[: self.layer]:
            tokens = block(tokens)
        block = self._blocks[self.layer]
        if self.config.facet == "token":
            return block(tokens)
        b, t, d = tokens.shape
        qkv = block.attn.qkv(block.norm1(tokens)).reshape(b, t, 3, d)
        return _heads_last(qkv[:, :, 1], self._num_heads)

    def _extract_hf(self, x: Tensor) -> Tensor:  # [B, 3, H, W] -> [B, 1 + h*w, D]
        block = self._blocks[self.layer]
        if self.config.facet == "token":
            module = block
        else:
            attn = block.attention
            module = attn.k_proj if hasattr(attn, "k_proj") else attn.attention.key
        captured = {}

        def hook(_module, _inputs, output):
            captured["out"] = output[0] if isinstance(output, tuple) else output

        handle = module.register_forward_hook(hook)
        try:
            self.network(pixel_values=x, interpolate_pos_encoding=True)
        finally:
            handle.remove()
        out = captured["out"]
        return out if self.config.facet == "token" else _heads_last(out, self._num_heads)

    def image_features(self, image: Float[Tensor, "H W 3"]) -> Float[Tensor, "h w D"]:
        """DINO descriptor map of ``image`` (see :func:`dino_feature_map`).

        Args:
            image: RGB image, uint8 or float in [0, 1]. [H, W, 3]

        Returns:
            Descriptor map on the teacher's device. [h, w, D]
        """
        image = to_float_image(image).to(self.device)
        return dino_feature_map(image, self.extract, self.config.load_size, IMAGENET_MEAN, IMAGENET_STD)
