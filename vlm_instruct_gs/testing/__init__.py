"""Test helpers that ship with the package (e.g. ``tiny_vlm``: a tiny random Qwen3-VL checkpoint)."""
