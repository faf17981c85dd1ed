"""vlm_backend.py: the transformers backend on a tiny random Qwen3-VL, start-up errors, the OpenAI-style client."""

import base64
import io
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch
from PIL import Image

from splat_core.images import to_pil_image
from vlm_instruct_gs.guidance.boxes import Box
from vlm_instruct_gs.guidance.mask_rule import region_masks
from vlm_instruct_gs.guidance.openai_backend import OpenAIChatVLMBackend, OpenAIChatVLMBackendConfig
from vlm_instruct_gs.guidance.vlm_backend import (
    TransformersVLMBackend,
    VLMBackend,
    VLMBackendConfig,
    VLMBackendError,
)

pytest.importorskip("transformers")
SMALL = dict(max_new_tokens=8, min_pixels=32 * 32, max_pixels=64 * 64, batch_size=2)


pytestmark = pytest.mark.usefixtures("one_torch_thread")



@pytest.fixture(scope="module")
def backend(tiny_vlm_dir):
    return TransformersVLMBackend(model_path=str(tiny_vlm_dir), **SMALL)


def _images():
    g = torch.Generator().manual_seed(0)
    return [
        torch.randint(0, 256, (40, 60, 3), dtype=torch.uint8, generator=g),  # uint8 tensor
        torch.rand(100, 70, 3, generator=g),  # float render in [0, 1]
        Image.fromarray(np.full((33, 33, 3), 200, np.uint8)),  # PIL
        np.zeros((64, 64, 3), np.uint8),  # numpy array
    ]


def test_tiny_checkpoint_is_consistent(backend):
    tok, cfg = backend.processor.tokenizer, backend.model.config
    assert type(backend.model).__name__ == "Qwen3VLForConditionalGeneration"
    assert cfg.text_config.vocab_size >= len(tok)
    for field_name, token in [("image_token_id", "<|image_pad|>"), ("vision_start_token_id", "<|vision_start|>")]:
        assert getattr(cfg, field_name) == tok.convert_tokens_to_ids(token)
    assert backend.device == torch.device("cpu") and backend.dtype == torch.float32
    assert backend.model.generation_config.do_sample is False  # checkpoint samples; the backend is greedy


def test_chat_template_and_image_tokens(backend):
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Box it."}]}]
    text = backend.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert (
        text
        == "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Box it.<|im_end|>\n<|im_start|>assistant\n"
    )
    inputs = backend.processor(
        text=[text],
        images=[to_pil_image(_images()[0])],
        return_tensors="pt",
        images_kwargs=dict(min_pixels=1024, max_pixels=4096),
    )
    n_image_tokens = int((inputs["input_ids"] == backend.model.config.image_token_id).sum())
    assert n_image_tokens == int(inputs["image_grid_thw"].prod()) // 4  # one token per merged 2x2 patch group


def test_ask_returns_one_string_per_image(backend):
    images = _images()
    answers = backend.ask(images, "Locate the main subject. Output JSON.")
    assert len(answers) == len(images) and all(isinstance(a, str) for a in answers)
    assert any(answers)  # random weights still emit text; only new tokens are decoded (no prompt echo)
    assert not any("Locate the main subject" in a for a in answers)
    # batched and one-by-one generation agree: in batch [2, 3] image 2 (1 visual token) is left-padded beside
    # image 3 (4 visual tokens)
    assert backend.ask([images[2]], "Locate the main subject. Output JSON.") == answers[2:3]
    assert backend.ask([], "anything") == []


def test_boxes_and_masks_run_through_real_model(backend):
    images = _images()[:1]
    per_image = backend.boxes("subject", images)
    assert len(per_image) == 1 and isinstance(per_image[0], list) and len(backend.last_answers) == 1
    regions = region_masks("detail", per_image[0], 40, 60)
    assert regions.densify is None or (regions.densify.shape == (40, 60) and regions.densify.dtype == torch.bool)


class _Echo(VLMBackend):
    def ask(self, images, prompt):
        return [prompt] * len(images)


def test_config_targets_and_setup():
    assert VLMBackendConfig()._target is TransformersVLMBackend
    assert OpenAIChatVLMBackendConfig()._target is OpenAIChatVLMBackend
    config = VLMBackendConfig(_target=_Echo, max_new_tokens=3)
    built = config.setup()
    assert isinstance(built, _Echo) and built.config is config
    assert _Echo(config, max_new_tokens=5).config.max_new_tokens == 5 and config.max_new_tokens == 3  # copy


def test_missing_model_path_raises_clear_error(tmp_path):
    missing = tmp_path / "no_such_checkpoint"
    with pytest.raises(VLMBackendError) as info:
        TransformersVLMBackend(model_path=str(missing))
    message = str(info.value)
    assert "VLMBackendConfig.model_path" in message and str(missing) in message and "hf download" in message
    assert "\n" not in message
    with pytest.raises(VLMBackendError, match="config.json"):
        TransformersVLMBackend(model_path=str(tmp_path))


def test_uncached_hub_id_fails_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(VLMBackendError, match="HF_HUB_OFFLINE"):
        TransformersVLMBackend(model_path="nobody/no-such-vlm")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with socket.socket() as s:  # an endpoint nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(VLMBackendError, match="unreachable"):
        TransformersVLMBackend(model_path="nobody/no-such-vlm")


def test_broken_checkpoint_raises_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(VLMBackendError, match="model_path") as info:
        TransformersVLMBackend(model_path=str(tmp_path))
    assert info.value.__cause__ is not None


def test_pixel_bounds_validated():
    with pytest.raises(ValueError, match="min_pixels"):
        TransformersVLMBackend(model_path="/unused", min_pixels=10, max_pixels=5)


class CannedBackend(VLMBackend):
    def __init__(self, answers, **overrides):
        super().__init__(**overrides)
        self.answers, self.prompts = answers, []

    def ask(self, images, prompt):
        self.prompts.append(prompt)
        return self.answers[: len(images)]


def test_base_class_boxes_use_phase_prompt_and_parser(tmp_path):
    (tmp_path / "subject.txt").write_text("# comment\nBox the subject.\n")
    fake = CannedBackend(['[{"bbox_2d": [0, 0, 500, 1000], "label": "cat"}]', "garbage"], prompt_dir=str(tmp_path))
    images = [torch.zeros(4, 4, 3), torch.zeros(2, 2, 3)]
    assert fake.boxes("subject", images) == [[Box(0, 0, 500, 1000, "cat")], []]
    assert fake.prompts == ["Box the subject."]
    per_image = fake.boxes("subject", images)
    background = region_masks("subject", per_image[0], 4, 4).densify
    assert background.tolist() == [[False, False, True, True]] * 4  # background = complement of the subject box
    assert region_masks("subject", per_image[1], 2, 2) == (None, None)  # no subject found -> no guidance
    assert "bbox_2d" in CannedBackend([]).prompt("artifacts")  # shipped prompt files


# ------------------------------------------------------------------------------------ OpenAI chat completions


class _Handler(BaseHTTPRequestHandler):
    answer = '```json\n[{"bbox_2d": [10, 20, 300, 400], "label": "floater"}]\n```'
    requests: list = []

    def log_message(self, *args):  # keep test output quiet
        pass

    def _reply(self, code, payload):
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._reply(200, {"object": "list", "data": [{"id": "tiny-served"}]})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append((self.path, dict(self.headers), body))
        if body["model"] == "fail":
            return self._reply(500, {"error": "boom"})
        self._reply(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": self.answer}}]})


@pytest.fixture()
def server():
    _Handler.requests = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    watchdog = threading.Timer(60.0, httpd.shutdown)  # bounded even if the test hangs
    watchdog.daemon = True
    watchdog.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        watchdog.cancel()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_openai_backend_round_trip(server, monkeypatch):
    monkeypatch.setenv("VLM_TEST_KEY", "secret-token")
    cfg = OpenAIChatVLMBackendConfig(
        base_url=server,
        model_path="tiny-served",
        timeout_s=5.0,
        min_pixels=256,
        max_pixels=1024,
        api_key_env="VLM_TEST_KEY",
    )
    backend = cfg.setup()
    assert isinstance(backend, OpenAIChatVLMBackend)
    images = [torch.rand(64, 48, 3), torch.zeros(8, 8, 3, dtype=torch.uint8)]
    assert backend.boxes("artifacts", images) == [[Box(10, 20, 300, 400, "floater")]] * 2
    assert len(_Handler.requests) == 2
    path, headers, body = _Handler.requests[0]
    assert path == "/v1/chat/completions" and headers["Authorization"] == "Bearer secret-token"
    assert body["model"] == "tiny-served" and body["temperature"] == 0.0 and body["max_tokens"] == cfg.max_new_tokens
    image_part, text_part = body["messages"][0]["content"]
    assert text_part["type"] == "text" and "bbox_2d" in text_part["text"]
    url = image_part["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.width * sent.height <= 1024 and abs(sent.width / sent.height - 48 / 64) < 0.1  # downscaled


def test_openai_backend_errors(server):
    with pytest.raises(VLMBackendError, match="HTTP 500"):
        OpenAIChatVLMBackend(base_url=server, model_path="fail", timeout_s=5.0).ask([torch.zeros(4, 4, 3)], "hi")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(VLMBackendError, match="base_url"):
        OpenAIChatVLMBackend(base_url=f"http://127.0.0.1:{port}/v1", timeout_s=2.0)


@pytest.mark.filterwarnings("error:Passing `min_pixels`:FutureWarning")  # the kwargs transformers is removing
@pytest.mark.parametrize("size", [(512, 384), (8, 8)])
def test_ask_keeps_images_within_the_pixel_bounds(tiny_vlm_dir, size):
    """min_pixels / max_pixels reach the image processor: a large image is shrunk, a tiny one enlarged."""
    backend = TransformersVLMBackend(model_path=str(tiny_vlm_dir), **SMALL)
    processor, grids = backend.processor, []

    class Spy:
        def __getattr__(self, name):
            return getattr(processor, name)

        def __call__(self, *args, **kwargs):
            out = processor(*args, **kwargs)
            grids.append(out["image_grid_thw"])
            return out

    backend.processor = Spy()
    backend.ask([np.zeros((size[1], size[0], 3), np.uint8)], "Locate the main subject.")
    patch = processor.image_processor.patch_size
    pixels = int(grids[0].prod()) * patch**2
    assert SMALL["min_pixels"] <= pixels <= SMALL["max_pixels"]
