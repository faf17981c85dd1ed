"""VLM guidance for densification, one job per module (imported explicitly; this package imports nothing so light
modules stay light).

- ``boxes``: the answer format: :class:`~vlm_instruct_gs.guidance.boxes.Box` (0-1000 normalised) and box
  rasterising; ``parsing``: the Qwen3-VL grounding-answer parser.
- ``phases``: the phase list and the schedule (``GuidanceSchedule``, pure functions of the step).
- ``mask_rule``: the one rule of which pixels a phase's boxes densify or search for floaters (training and CLI).
- ``sources``: the ``GuidanceSource`` interface, its errors and the factory of the configured source;
  ``vlm_backend`` / ``openai_backend`` (Qwen3-VL through transformers, or an OpenAI-style server),
  ``image_evidence`` (+ ``evidence_maps``, weights-free), ``boxes_file`` (regions per training image from a JSON
  file) and ``prompts`` (editable prompt files) are the sources.
- ``snapshots`` / ``novel_views``: what a query sees (training and novel views, warped evidence); ``pinhole``: the
  pixel-to-world geometry they and ``spawning`` share.
- ``worker``: queries off the training thread; ``answering``: what the worker does with one (ask the source, regions,
  records); ``resume_state``: jobs and results as checkpointable data.
- ``applying``: answers to the strategy's guidance at an apply step, through ``gaussian_masks`` (region masks to
  per-Gaussian densify/prune/grow guidance) and ``spawning`` (new Gaussians where a region holds too few).
- ``records``: what every query leaves on disk, in TensorBoard and in the viewer.
- ``guidance_controller`` (``GuidanceConfig``) / ``controller`` (``GuidanceController``): the training-loop glue
  (hooks, deterministic timing, resume, reports).
- ``cli``: the ``vlm-gs-guide`` command.
"""
