"""Client of an OpenAI-compatible chat completions server (e.g. ``vllm serve Qwen/Qwen3-VL-2B-Instruct``) as a VLM
backend, through ``urllib`` only: :class:`OpenAIChatVLMBackendConfig` / :class:`OpenAIChatVLMBackend`.

Same contract as :mod:`~vlm_instruct_gs.guidance.vlm_backend` (``config.setup()`` builds it; construction checks the
server and fails with one :class:`~vlm_instruct_gs.guidance.vlm_backend.VLMBackendError` naming the field).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import math
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Type

from PIL import Image

from splat_core.images import to_pil_image
from vlm_instruct_gs.guidance.vlm_backend import VLMBackend, VLMBackendConfig, VLMBackendError

logger = logging.getLogger(__name__)


@dataclass
class OpenAIChatVLMBackendConfig(VLMBackendConfig):
    """Config of :class:`OpenAIChatVLMBackend`; dtype, device and batch_size are unused (the server decides)."""

    _target: Type = field(default_factory=lambda: OpenAIChatVLMBackend)
    base_url: str = "http://127.0.0.1:8000/v1"
    """Server root; requests go to <base_url>/chat/completions."""
    timeout_s: float = 120.0
    """Per-request timeout, in seconds."""
    api_key_env: str = ""
    """Name of the environment variable holding a bearer token; empty sends no Authorization header."""
    check_server: bool = True
    """Query <base_url>/models at construction, so an unreachable server fails at start-up."""


class OpenAIChatVLMBackend(VLMBackend):
    """Client of an OpenAI-compatible chat completions server (vLLM, SGLang, ...), standard library only.

    Each image is sent as a base64 PNG ``image_url`` part followed by the prompt, one request per image,
    ``temperature=0``. Images larger than ``max_pixels`` are downscaled first (aspect kept). Construction checks
    ``<base_url>/models`` when ``check_server`` is set; failures raise :class:`VLMBackendError` naming the field.
    """

    config_class = OpenAIChatVLMBackendConfig

    def __init__(self, config: Optional[OpenAIChatVLMBackendConfig] = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.config: OpenAIChatVLMBackendConfig
        self.url = self.config.base_url.rstrip("/")
        if self.config.check_server:
            served = [m.get("id") for m in self._request("GET", "/models").get("data", []) if isinstance(m, dict)]
            if served and self.config.model_path not in served:
                logger.warning("server %s serves %s, not model_path=%r", self.url, served, self.config.model_path)

    def _request(self, method: str, route: str, body: Optional[dict] = None) -> dict:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.config.api_key_env, "") if self.config.api_key_env else ""
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = None if body is None else json.dumps(body).encode("utf-8")
        req = urllib.request.Request(self.url + route, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.config.timeout_s) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            detail = e.read()[:300].decode("utf-8", "replace")
            raise VLMBackendError(
                f"OpenAIChatVLMBackendConfig.base_url={self.url!r}: HTTP {e.code} on {route}: {detail}"
            ) from e
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise VLMBackendError(
                f"OpenAIChatVLMBackendConfig.base_url={self.url!r} failed on {route}: {e}; is the server running?"
            ) from e

    def _encode(self, image: Image.Image) -> str:
        area = image.width * image.height
        if area > self.config.max_pixels:
            scale = math.sqrt(self.config.max_pixels / area)
            size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
            image = image.resize(size, Image.BICUBIC)
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")

    def ask(self, images: Sequence[Any], prompt: str) -> List[str]:
        answers = []
        for image in images:
            content = [{"type": "image_url", "image_url": {"url": self._encode(to_pil_image(image))}}]
            content.append({"type": "text", "text": prompt})
            body = {
                "model": self.config.model_path,
                "messages": [{"role": "user", "content": content}],
                "max_tokens": self.config.max_new_tokens,
                "temperature": 0.0,
            }
            reply = self._request("POST", "/chat/completions", body)
            try:
                message = reply["choices"][0]["message"].get("content") or ""
            except (KeyError, IndexError, TypeError, AttributeError):
                logger.warning("unexpected chat completion payload: %.200s", json.dumps(reply))
                message = ""
            if isinstance(message, list):  # content parts
                message = "".join(p.get("text", "") for p in message if isinstance(p, dict))
            answers.append(str(message).strip())
        return answers


__all__ = ["OpenAIChatVLMBackend", "OpenAIChatVLMBackendConfig"]
