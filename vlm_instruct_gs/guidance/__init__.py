"""VLM guidance for densification, one job per module (imported explicitly; this package imports nothing so light
modules stay light).

- ``boxes``: the answer format: :class:`~vlm_instruct_gs.guidance.boxes.Box` (0-1000 normalised), the Qwen3-VL
  grounding-answer parser and box rasterising.
- ``phases``: the phase list and the schedule (``GuidanceSchedule``, pure functions of the step).
- ``mask_rule``: the one rule of which pixels a phase's boxes densify or search for floaters (training and CLI).
- ``sources``: the ``GuidanceSource`` interface, its errors and the factory of the configured source;
  ``vlm_backend`` / ``openai_backend`` (Qwen3-VL through transformers, or an OpenAI-style server),
  ``image_evidence`` (+ ``evidence_maps``, weights-free) and ``prompts`` (editable prompt files) are the sources.
- ``snapshots`` / ``novel_views``: what a query sees (training and novel views, warped evidence).
- ``worker``: queries off the training thread; ``resume_state``: jobs and results as checkpointable data.
- ``gaussian_masks``: region masks to per-Gaussian densify/prune guidance.
- ``records``: what every query leaves on disk, in TensorBoard and in the viewer.
- ``guidance_controller`` (``GuidanceConfig``) / ``controller`` (``GuidanceController``): the training-loop glue.
- ``cli``: the ``vlm-gs-guide`` command.
"""
