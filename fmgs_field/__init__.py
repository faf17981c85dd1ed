"""FMGS language field (arXiv 2401.01970) as nerfstudio building blocks and the ``fmgs`` method.

Pure, CPU-testable parts: ``field`` (hash-grid field with CLIP/DINO heads), ``teachers`` (OpenCLIP and DINO teachers,
hybrid CLIP maps, disk cache), ``losses``, ``relevancy`` and ``evaluation`` (LERF-OVS localization and mIoU).
nerfstudio wiring: ``data.fmgs_datamanager``, ``fmgs_model``, ``fmgs_pipeline`` and ``fmgs_config`` (the
``MethodSpecification``). ``query_cli``: the ``fmgs-query`` command (relevancy heatmaps, per-Gaussian feature export,
LERF-OVS evaluation of a trained run). ``testing``: tiny random teachers and a small field config for offline tests.
"""
