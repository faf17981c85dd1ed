"""What a guidance query sees: renders of training or novel views copied to the CPU as uint8, plus their evidence.

:func:`snapshot_views` runs on the training thread at a query step (see
:mod:`~vlm_instruct_gs.guidance.controller`); everything it returns is a CPU copy, so the worker thread never
touches training tensors. Per phase:

- ``detail``: renders of random training views; evidence ``reference`` = the training photo (image-evidence
  compares texture energy).
- ``subject``: the training photos themselves (``subject_image="ground-truth"``) or renders with evidence ``depth``.
- ``artifacts``: renders of novel views (:func:`~vlm_instruct_gs.guidance.novel_views.novel_cameras`); evidence
  ``reference`` = the nearest training photo warped into the novel view through the rendered depth, and ``valid``
  where that warp has data.

A source that knows regions per training image (a boxes file) names the training views it may be asked about
(``candidates``), and its ``artifacts`` queries render those training views instead of novel ones.

View choice and novel poses come from a generator seeded with ``(seed, step, phase)``, so a resumed run repeats them.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from nerfstudio.cameras.cameras import Cameras
from torch import Tensor

from splat_core.images import to_uint8_image
from splat_core.rendering.views import Renderer
from vlm_instruct_gs.guidance.novel_views import novel_cameras, warp_to_view
from vlm_instruct_gs.guidance.phases import PHASES, check_phase
from vlm_instruct_gs.guidance.pinhole import intrinsics_at
from vlm_instruct_gs.guidance.worker import GuidanceView


@torch.no_grad()
def snapshot_views(
    phase: str,
    step: int,
    render: Renderer,
    cameras: Cameras,
    images: Sequence[Dict[str, Tensor]],
    num_views: int,
    seed: int = 0,
    subject_image: str = "ground-truth",
    image_names: Optional[Sequence[str]] = None,
    candidates: Optional[Sequence[int]] = None,
    novel_views: bool = True,
    **novel: float,
) -> Tuple[GuidanceView, ...]:
    """The views a ``phase`` query at ``step`` asks about.

    Args:
        phase: ``detail``, ``subject`` or ``artifacts``.
        step: training step (seeds the choice together with ``seed``).
        render: renders one camera with the current Gaussians.
        cameras: training cameras ``[C]`` (any device).
        images: cached training images, ``images[i]["image"]`` [H, W, 3|4] uint8 or float in [0, 1].
        num_views: views per query (at most C training views; any number of novel views).
        seed: base seed.
        subject_image: ``"ground-truth"`` (the photo) or ``"render"`` for the subject phase.
        image_names: file names of the training images ``[C]`` (recorded in each view), or None.
        candidates: training views to draw from (e.g. those a boxes file names); None is all of them.
        novel_views: ``artifacts`` renders novel views (True) or training views like ``detail`` (False: a source that
            knows regions per training image).
        novel: ``interpolate_frac``, ``translation_frac``, ``rotation_deg`` of
            :func:`~vlm_instruct_gs.guidance.novel_views.novel_poses`.

    Returns:
        One :class:`GuidanceView` per view, CPU tensors only; ids ``train_IIII`` or ``novel_JJ_{between|around}_IIII``
        (IIII: the nearest training view).
    """
    check_phase(phase)
    cameras = cameras.to("cpu")
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step * len(PHASES) + PHASES.index(phase))
    views: List[GuidanceView] = []
    names = list(image_names) if image_names is not None else [""] * len(cameras)
    if phase == "artifacts" and novel_views:
        novel_cams, nearest, interpolated = novel_cameras(cameras, num_views, gen, **novel)
        for j in range(num_views):
            camera, ref = novel_cams[j : j + 1], int(nearest[j])
            out = render(camera)
            dev = out.depth.device
            gt = to_uint8_image(images[ref]["image"])
            warped, valid = warp_to_view(
                out.depth, intrinsics_at(camera, *out.depth.shape).to(dev), camera.camera_to_worlds[0].to(dev),
                gt.float() / 255.0, intrinsics_at(cameras[ref : ref + 1], *gt.shape[:2]),
                cameras.camera_to_worlds[ref], valid_dst=out.alpha > 0.5,
            )
            kind = "between" if bool(interpolated[j]) else "around"
            evidence = {"reference": to_uint8_image(warped), "valid": valid.cpu()}
            views.append(GuidanceView(f"novel_{j:02d}_{kind}_{ref:04d}", camera, to_uint8_image(out.rgb), evidence,
                                      names[ref], ref))
        return tuple(views)
    pool = torch.arange(len(cameras)) if candidates is None else torch.as_tensor(list(candidates), dtype=torch.long)
    for i in pool[torch.randperm(len(pool), generator=gen)[:num_views]].tolist():
        camera = cameras[i : i + 1]
        gt = to_uint8_image(images[i]["image"])
        if phase == "subject" and subject_image == "ground-truth":
            views.append(GuidanceView(f"train_{i:04d}", camera, gt, {}, names[i], i))
            continue
        out = render(camera)
        evidence = {"reference": gt} if phase == "detail" else {"depth": out.depth.cpu()}
        views.append(GuidanceView(f"train_{i:04d}", camera, to_uint8_image(out.rgb), evidence, names[i], i))
    return tuple(views)


__all__ = ["snapshot_views"]
