"""Vision-language model backends: ``_target`` configs, an abstract base and two concrete backends.

Styled after LERF's image encoders (``BaseImageEncoderConfig`` / ``BaseImageEncoder``): each backend has an ``XConfig`` naming its class in ``_target``;
``config.setup()`` builds it. Backends load their weights (or check their server) once, at construction, and fail
there with one :class:`VLMBackendError` that names the config field and the path.

- :class:`TransformersVLMBackend` (config :class:`VLMBackendConfig`): Qwen3-VL through ``AutoProcessor`` +
  ``AutoModelForImageTextToText``, batched greedy generation.
- ``OpenAIChatVLMBackend`` (config ``OpenAIChatVLMBackendConfig``, in
  :mod:`~vlm_instruct_gs.guidance.openai_backend`): any server speaking the OpenAI chat completions API with image
  content (e.g. ``vllm serve Qwen/Qwen3-VL-2B-Instruct``), through ``urllib`` only.

Images are ``[H, W, 3]`` tensors/arrays (uint8 0-255, or float 0-1 as renders are) or PIL images.
"""

from __future__ import annotations

import abc
import copy
import dataclasses
import logging
import os
import socket
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Literal, Optional, Sequence, Type

import torch
from nerfstudio.configs.base_config import InstantiateConfig

from splat_core.images import to_pil_image
from vlm_instruct_gs.guidance.boxes import Box
from vlm_instruct_gs.guidance.parsing import parse_boxes
from vlm_instruct_gs.guidance.prompts import load_prompt
from vlm_instruct_gs.guidance.sources import DOWNLOAD_HINT, GuidanceSource, GuidanceSourceError

logger = logging.getLogger(__name__)


class VLMBackendError(GuidanceSourceError):
    """A backend cannot be built (bad model path, unreachable server) or a remote query failed; ``reason`` holds
    the cause alone (see :class:`~vlm_instruct_gs.guidance.sources.GuidanceSourceError`)."""


@dataclass
class VLMBackendConfig(InstantiateConfig):
    """Config of a VLM backend; by default the local transformers backend (:class:`TransformersVLMBackend`)."""

    _target: Type = field(default_factory=lambda: TransformersVLMBackend)
    model_path: str = "Qwen/Qwen3-VL-2B-Instruct"
    """Hugging Face hub id or local checkpoint directory (a directory is loaded with local_files_only). For the
    OpenAI backend: the model name the server serves."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Weight dtype; auto is bfloat16 on CUDA and float32 on CPU."""
    device: str = "auto"
    """Torch device string; auto is cuda when available, else cpu."""
    max_new_tokens: int = 256
    """Generation budget per answer, in tokens (a grounding list of 4 boxes needs about 100)."""
    batch_size: int = 4
    """Images per generate() call."""
    min_pixels: int = 65536
    """Lower bound on the image area fed to the vision encoder, in pixels (Qwen3-VL default 256*256)."""
    max_pixels: int = 1048576
    """Upper bound on the image area, in pixels; 1024*1024 is about 1024 visual tokens (32x32 px each)."""
    prompt_dir: Optional[str] = None
    """Folder with detail.txt / subject.txt / artifacts.txt; None is <repo>/configs/prompts."""


class VLMBackend(GuidanceSource):
    """Abstract VLM: answers one prompt about each image. Subclasses implement :meth:`ask`.

    Args:
        config (VLMBackendConfig | None): backend config; None uses ``config_class()``.
        **overrides: config fields replaced on a copy, e.g. ``TransformersVLMBackend(model_path="/ckpt")``.
    """

    config_class: Type[VLMBackendConfig] = VLMBackendConfig

    def __init__(self, config: Optional[VLMBackendConfig] = None, **overrides: Any) -> None:
        config = config if config is not None else self.config_class()
        self.config = dataclasses.replace(config, **overrides) if overrides else config
        if not 0 < self.config.min_pixels <= self.config.max_pixels:
            raise ValueError(
                f"VLMBackendConfig needs 0 < min_pixels <= max_pixels, got {self.config.min_pixels}, "
                f"{self.config.max_pixels}"
            )
        self.last_answers: List[str] = []
        """Raw answers of the latest :meth:`boxes` call (diagnostics, e.g. a viewer text field)."""

    @abc.abstractmethod
    def ask(self, images: Sequence[Any], prompt: str) -> List[str]:
        """Ask ``prompt`` about every image independently.

        Args:
            images: ``[H, W, 3]`` uint8 (0-255) or float (0-1) tensors/arrays, or PIL images; sizes may differ.
            prompt (str): the user text sent after the image.

        Returns:
            list[str]: one answer per image, in order, special tokens removed, stripped.
        """

    def prompt(self, phase: str) -> str:
        """Prompt text for ``phase`` read from ``config.prompt_dir`` (see :func:`load_prompt`)."""
        return load_prompt(phase, prompt_dir=self.config.prompt_dir)

    def boxes(
        self, phase: str, images: Sequence[Any], prompt: Optional[str] = None, **evidence: Any
    ) -> List[List[Box]]:
        """Ask the phase prompt (or ``prompt``) about each image and parse the answers.

        Returns one list of normalised 0-1000 :class:`Box` per image (empty when the answer holds none; see
        :func:`parse_boxes`). ``evidence`` (reference images, error maps) is ignored: the VLM sees only the image.
        """
        answers = self.ask(images, prompt if prompt is not None else self.prompt(phase))
        self.last_answers = answers
        return [parse_boxes(a) for a in answers]


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def _looks_local(model_path: str) -> bool:
    """True for existing paths and for strings that cannot be a hub id ``namespace/name``."""
    p = Path(model_path).expanduser()
    return p.exists() or model_path.startswith((".", "/", "~")) or model_path.count("/") > 1 or "\\" in model_path


def _reachable(url: str, timeout_s: float = 5.0) -> bool:
    """Whether a TCP connection to the host of ``url`` opens within ``timeout_s`` (fails fast when offline)."""
    parsed = urllib.parse.urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _load_error(model_path: str, reason: str) -> VLMBackendError:
    reason = " ".join(reason.split())[:300]
    return VLMBackendError(
        f"VLMBackendConfig.model_path={model_path!r} could not be loaded: {reason}. Set model_path (vlm-gs-guide "
        f"--model) to a local Qwen3-VL checkpoint directory (config.json, *.safetensors, tokenizer and processor "
        f"files) or a hub id reachable from this machine; {DOWNLOAD_HINT}.",
        reason=reason,
    )


class TransformersVLMBackend(VLMBackend):
    """Qwen3-VL (or another image-text-to-text model) run locally with transformers.

    Loads processor and weights once; a missing directory, a folder without ``config.json`` or any loading failure
    raises :class:`VLMBackendError` naming ``VLMBackendConfig.model_path``. Generation is greedy, batched by
    ``config.batch_size`` with left padding, and only the new tokens are decoded.
    """

    config_class = VLMBackendConfig

    def __init__(self, config: Optional[VLMBackendConfig] = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        cfg = self.config
        self.device = _resolve_device(cfg.device)
        self.dtype = _resolve_dtype(cfg.dtype, self.device)
        self.processor, self.model = self._load(cfg.model_path)
        self.processor.tokenizer.padding_side = "left"
        gen = copy.deepcopy(self.model.generation_config)
        gen.do_sample, gen.num_beams, gen.temperature, gen.top_p, gen.top_k = False, 1, None, None, None
        gen.max_new_tokens = cfg.max_new_tokens
        if gen.pad_token_id is None:
            tok = self.processor.tokenizer
            gen.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.model.generation_config = gen  # greedy, replacing the checkpoint's sampling defaults

    def _load(self, model_path: str):
        """Processor and model from a local directory, else from the HF cache, else (hub reachable) a download."""
        if _looks_local(model_path):
            source = str(Path(model_path).expanduser())
            if not Path(source).is_dir():
                raise _load_error(model_path, "no such directory")
            if not (Path(source) / "config.json").is_file():
                raise _load_error(
                    model_path, "the directory has no config.json, so it is not a transformers checkpoint"
                )
            return self._from_pretrained(model_path, source, local_files_only=True)
        try:  # hub id: the local Hugging Face cache first, without touching the network
            return self._from_pretrained(model_path, model_path, local_files_only=True)
        except VLMBackendError:
            pass
        if os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("0", "", "false", "no", "off"):
            raise _load_error(model_path, "not in the local Hugging Face cache and HF_HUB_OFFLINE is set")
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
        if not _reachable(endpoint):
            raise _load_error(model_path, f"not in the local Hugging Face cache and {endpoint} is unreachable")
        return self._from_pretrained(model_path, model_path, local_files_only=False)

    def _from_pretrained(self, model_path: str, source: str, local_files_only: bool):
        kwargs = {"local_files_only": local_files_only}
        try:
            from transformers import AutoProcessor

            processor = AutoProcessor.from_pretrained(source, **kwargs)
            model = self._load_model(source, kwargs)
        except Exception as e:  # re-raised with the cause chained: one clear start-up error
            raise _load_error(model_path, f"{type(e).__name__}: {e}") from e
        model.to(self.device).eval()
        return processor, model

    def _load_model(self, source: str, kwargs: dict):
        try:
            from transformers import AutoModelForImageTextToText

            return AutoModelForImageTextToText.from_pretrained(source, dtype=self.dtype, **kwargs)
        except (ImportError, ValueError) as e:  # auto class missing or not mapping this config
            logger.info("AutoModelForImageTextToText failed (%s); trying Qwen3VLForConditionalGeneration", e)
        from transformers import Qwen3VLForConditionalGeneration

        return Qwen3VLForConditionalGeneration.from_pretrained(source, dtype=self.dtype, **kwargs)

    @torch.inference_mode()
    def ask(self, images: Sequence[Any], prompt: str) -> List[str]:
        pil = [to_pil_image(im) for im in images]
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        # Qwen2/3-VL image processors read pixel-count bounds from size (min_pixels/max_pixels kwargs are deprecated)
        pixels = {"size": {"shortest_edge": self.config.min_pixels, "longest_edge": self.config.max_pixels}}
        answers: List[str] = []
        for i in range(0, len(pil), max(1, self.config.batch_size)):
            chunk = pil[i : i + max(1, self.config.batch_size)]
            inputs = self.processor(
                text=[text] * len(chunk), images=chunk, padding=True, return_tensors="pt", images_kwargs=pixels
            ).to(self.device)
            if "pixel_values" in inputs:
                inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
            out = self.model.generate(**inputs)
            new_tokens = out[:, inputs["input_ids"].shape[1] :]
            answers.extend(s.strip() for s in self.processor.batch_decode(new_tokens, skip_special_tokens=True))
        return answers


def __getattr__(name: str):
    """The OpenAI client moved to :mod:`~vlm_instruct_gs.guidance.openai_backend`; config.yml files written before
    name it here, so this module still resolves those names (lazily: that module imports this one)."""
    if name in ("OpenAIChatVLMBackend", "OpenAIChatVLMBackendConfig"):
        from vlm_instruct_gs.guidance import openai_backend

        return getattr(openai_backend, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "TransformersVLMBackend",
    "VLMBackend",
    "VLMBackendConfig",
    "VLMBackendError",
]
