"""OpenCLIP teacher: tile embeddings for hybrid CLIP maps and text embeddings for relevancy queries.

FMGS uses OpenCLIP ViT-B-16 with the ``laion2b_s34b_b88k`` weights (``OpenCLIPNetworkConfig`` in FMGS's
``lerf/encoders/openclip_encoder.py``). Tiles are resized to the model's input size and standardised with its
preprocessing mean/std, as LERF's ``OpenCLIPNetwork.process`` does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Type

import open_clip
import torch
import torch.nn.functional as F
from jaxtyping import Float
from nerfstudio.viewer.viewer_elements import ViewerText
from torch import Tensor

from fmgs_field.relevancy import CANONICAL_NEGATIVES, relevancy
from fmgs_field.teachers.base import (
    FeatureTeacher,
    FeatureTeacherConfig,
    MissingWeightsError,
    normalize_image,
)
from fmgs_field.teachers.pyramid import hybrid_clip_map
from splat_core.images import to_float_image

_HF_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


@dataclass
class CLIPTeacherConfig(FeatureTeacherConfig):
    """Configuration of :class:`CLIPTeacher`."""

    _target: Type = field(default_factory=lambda: CLIPTeacher)
    model_name: str = "ViT-B-16"
    """OpenCLIP architecture name (``open_clip.list_models()``)."""
    model_config_file: Optional[Path] = None
    """Local OpenCLIP architecture JSON (e.g. a tiny offline model); registered before loading. Its file stem must
    equal model_name."""
    pretrained: str = "laion2b_s34b_b88k"
    """Weights: a checkpoint file, or an OpenCLIP tag of ``model_name`` already in the local Hugging Face cache."""
    cache_dir: Optional[str] = None
    """Cache folder searched for a tag's weights (None: the default Hugging Face / OpenCLIP cache)."""
    allow_download: bool = False
    """Let OpenCLIP download a tag that is not cached (off: a missing file raises at construction)."""
    num_scales: int = 7
    """Tile scales of the hybrid CLIP map."""
    min_tile: float = 0.05
    """Smallest tile, fraction of the image height."""
    max_tile: float = 0.5
    """Largest tile, fraction of the image height."""
    stride: float = 0.5
    """Tile stride, fraction of the tile (for tiles of 0.15 of the image and up; smaller tiles do not overlap)."""
    out_stride: Optional[int] = None
    """Spacing of the hybrid map in pixels (None: finest tile stride minus 3, as FMGS)."""
    batch_size: int = 64
    """Tiles per CLIP forward pass."""
    negatives: Tuple[str, ...] = CANONICAL_NEGATIVES
    """Canonical negative phrases for relevancy."""
    viewer_positives: bool = True
    """Add "FMGS Positives" and "FMGS Negatives" ViewerText fields (';'-separated phrases) to ns-viewer."""


def resolve_clip_weights(config: CLIPTeacherConfig) -> str:
    """Local path (or, with ``allow_download``, the tag) to hand to ``open_clip.create_model_and_transforms``.

    Args:
        config: Teacher configuration.

    Returns:
        A checkpoint path, or the tag itself when downloads are allowed and nothing is cached.

    Raises:
        MissingWeightsError: No file for ``config.pretrained``; the message names the field.
    """
    tag = config.pretrained
    field_name = f"CLIPTeacherConfig.pretrained (= {tag!r}, model_name={config.model_name!r})"
    if not tag:
        raise MissingWeightsError(f"{field_name} is empty: set it to a checkpoint file or an OpenCLIP tag")
    path = Path(tag).expanduser()
    if path.is_file():
        return str(path)
    cfg = open_clip.get_pretrained_cfg(config.model_name, tag)
    if not cfg:
        raise MissingWeightsError(
            f"{field_name} is neither an existing file nor an OpenCLIP tag of this model "
            f"(tags: {open_clip.list_pretrained_tags_by_model(config.model_name)})"
        )
    if cfg.get("file"):
        return cfg["file"]
    candidates: List[str] = []
    if cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache

        repo_id, filename = os.path.split(cfg["hf_hub"])  # "org/repo/file" or "org/repo/" (default file names)
        for name in ([filename] if filename else []) + list(_HF_WEIGHT_FILES):
            found = try_to_load_from_cache(repo_id, name, cache_dir=config.cache_dir)
            if isinstance(found, str):
                return found
        candidates.append(f"hf://{repo_id}")
    if cfg.get("url"):
        local = Path(config.cache_dir or "~/.cache/clip").expanduser() / os.path.basename(cfg["url"])
        if local.is_file():
            return str(local)
        candidates.append(str(local))
    if config.allow_download:
        return tag
    raise MissingWeightsError(
        f"{field_name}: weights not found locally (looked in {', '.join(candidates)}). Point the field at a "
        "checkpoint file, fill the cache, or set CLIPTeacherConfig.allow_download=True."
    )


def register_model_config(config: CLIPTeacherConfig) -> None:
    """Registers ``config.model_config_file`` with OpenCLIP (no-op when it is None).

    Raises:
        MissingWeightsError: The file does not exist.
        ValueError: Its stem differs from ``config.model_name`` (OpenCLIP names a config after its file).
    """
    if config.model_config_file is None:
        return
    path = Path(config.model_config_file).expanduser()
    if not path.is_file():
        raise MissingWeightsError(f"CLIPTeacherConfig.model_config_file (= {str(path)!r}) does not exist")
    if path.stem != config.model_name:
        raise ValueError(f"CLIPTeacherConfig.model_config_file {path.name} must be named <model_name>.json")
    open_clip.add_model_config(path)


class CLIPTeacher(FeatureTeacher):
    """OpenCLIP image/text encoder: hybrid CLIP maps for training, text embeddings for relevancy queries.

    Args:
        config (CLIPTeacherConfig): Model, weights and pyramid settings.
    """

    config: CLIPTeacherConfig

    def __init__(self, config: CLIPTeacherConfig) -> None:
        super().__init__(config)
        register_model_config(config)
        weights = resolve_clip_weights(config)
        kwargs: Dict[str, Any] = {}
        tag_cfg = open_clip.get_pretrained_cfg(config.model_name, config.pretrained)
        if tag_cfg and weights != config.pretrained:
            kwargs = {"image_mean": tag_cfg.get("mean"), "image_std": tag_cfg.get("std")}
        model, _, _ = open_clip.create_model_and_transforms(
            config.model_name, pretrained=weights, cache_dir=config.cache_dir, **kwargs
        )
        self._set_network(model)
        pre = model.visual.preprocess_cfg
        size = pre["size"]
        self.input_size: Tuple[int, int] = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        self.mean: Tuple[float, ...] = tuple(pre["mean"])
        self.std: Tuple[float, ...] = tuple(pre["std"])
        self.tokenizer = open_clip.get_tokenizer(config.model_name)
        self.positives: List[str] = []
        self.negatives: List[str] = list(config.negatives)
        # canonical_neg_embeds: the configured negatives (evaluation); neg_embeds: the current ones (viewer-editable)
        self.register_buffer("canonical_neg_embeds", self.encode_text(self.negatives), persistent=False)
        self.register_buffer("neg_embeds", self.canonical_neg_embeds.clone(), persistent=False)
        self._dim = self.neg_embeds.shape[-1]
        self.register_buffer("pos_embeds", torch.zeros(0, self._dim), persistent=False)
        if config.viewer_positives:
            self.positives_text = ViewerText(
                "FMGS Positives", "", cb_hook=self._on_positives, hint="';'-separated text queries"
            )
            self.negatives_text = ViewerText(
                "FMGS Negatives",
                ";".join(config.negatives),
                cb_hook=self._on_negatives,
                hint="';'-separated negative phrases (empty: the configured canonical negatives)",
            )

    @property
    def name(self) -> str:
        """``openclip_<model>_<tag or file stem>``."""
        return f"openclip_{self.config.model_name}_{Path(self.config.pretrained).stem}"

    @property
    def feature_dim(self) -> int:
        """Embedding size (512 for ViT-B-16)."""
        return self._dim

    def fingerprint(self) -> Dict[str, Any]:
        """Model, weights tag and pyramid settings."""
        c = self.config
        return {
            "teacher": "clip",
            "model": c.model_name,
            "pretrained": c.pretrained,
            "pyramid": [c.num_scales, c.min_tile, c.max_tile, c.stride, c.out_stride],
        }

    @torch.no_grad()
    def encode_image(self, tiles: Float[Tensor, "B 3 h w"]) -> Float[Tensor, "B D"]:
        """Unit-norm CLIP embeddings of image tiles.

        Args:
            tiles: Tiles in [0, 1], any size (resized to the model's input size). [B, 3, h, w]

        Returns:
            Embeddings. [B, D]
        """
        x = normalize_image(tiles.to(self.device, torch.float32), self.mean, self.std, self.input_size)
        return F.normalize(self.network.encode_image(x).float(), dim=-1)

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> Float[Tensor, "T D"]:
        """Unit-norm CLIP embeddings of phrases, tokenised with OpenCLIP's tokenizer.

        Args:
            texts: Phrases (T of them).

        Returns:
            Embeddings on the teacher's device. [T, D]
        """
        tokens = self.tokenizer(list(texts)).to(self.device)
        return F.normalize(self.network.encode_text(tokens).float(), dim=-1)

    def set_positives(self, texts: Sequence[str]) -> None:
        """Sets the positive queries (blank entries dropped) and caches their embeddings in ``pos_embeds``.

        Args:
            texts: Phrases; an empty list clears the queries.
        """
        self.positives = [t.strip() for t in texts if t.strip()]
        if self.positives:
            self.pos_embeds = self.encode_text(self.positives)
        else:
            self.pos_embeds = torch.zeros(0, self._dim, device=self.neg_embeds.device)

    def set_negatives(self, texts: Sequence[str]) -> None:
        """Sets the negative phrases (blank entries dropped) and caches their embeddings in ``neg_embeds``.

        Args:
            texts: Phrases; an empty list restores the configured ``negatives``.
        """
        phrases = [t.strip() for t in texts if t.strip()]
        if phrases:
            self.negatives = phrases
            self.neg_embeds = self.encode_text(phrases)
        else:
            self.negatives = list(self.config.negatives)
            self.neg_embeds = self.canonical_neg_embeds.clone()

    def _on_positives(self, element: ViewerText) -> None:  # viewer callback: state update only
        self.set_positives(element.value.split(";"))

    def _on_negatives(self, element: ViewerText) -> None:  # viewer callback: state update only
        self.set_negatives(element.value.split(";"))

    def relevancy(self, features: Float[Tensor, "*bs D"]) -> Float[Tensor, "*bs P"]:
        """LERF relevancy of ``features`` to the current positives against the current negatives (``neg_embeds``).

        Args:
            features: CLIP features. [..., D]

        Returns:
            Relevancy per positive. [..., P]
        """
        return relevancy(features, self.pos_embeds.to(features.device), self.neg_embeds.to(features.device))

    def image_features(self, image: Float[Tensor, "H W 3"]) -> Float[Tensor, "h w D"]:
        """Hybrid CLIP map of ``image`` (see :func:`fmgs_field.teachers.pyramid.hybrid_clip_map`).

        Args:
            image: RGB image, uint8 or float in [0, 1]. [H, W, 3]

        Returns:
            Unit-norm map on the teacher's device. [h, w, D]
        """
        c = self.config
        return hybrid_clip_map(
            to_float_image(image).to(self.device),
            self.encode_image,
            scales=c.num_scales,
            min_tile=c.min_tile,
            max_tile=c.max_tile,
            stride=c.stride,
            out_stride=c.out_stride,
            batch_size=c.batch_size,
        )
