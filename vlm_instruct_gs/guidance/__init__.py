"""VLM guidance for densification: what to ask, how to read the answer, and a weights-free stand-in.

Modules (imported explicitly; this package imports nothing so light modules stay light):

- ``parsing``: Qwen3-VL grounding text -> :class:`~vlm_instruct_gs.guidance.parsing.Box` records (0-1000 normalised),
  box masks, and the ``GuidanceSource`` interface (``boxes`` / ``masks``) shared by all sources.
- ``prompts``: per-phase prompt text from ``configs/prompts/{detail,subject,artifacts}.txt``.
- ``vlm_backend``: ``VLMBackendConfig`` / ``TransformersVLMBackend`` (local Qwen3-VL) and
  ``OpenAIChatVLMBackendConfig`` / ``OpenAIChatVLMBackend`` (vLLM-style server).
- ``image_evidence``: ``ImageEvidenceGuideConfig`` / ``ImageEvidenceGuide``, the same three phases from image
  statistics.
- ``cli``: the ``vlm-gs-guide`` command.
"""
