"""image_evidence.py: the three phases on synthetic images whose answer is known."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from skimage.filters import threshold_otsu

from vlm_instruct_gs.guidance.boxes import Box
from vlm_instruct_gs.guidance.image_evidence import (
    ImageEvidenceGuide,
    ImageEvidenceGuideConfig,
    artifact_boxes,
    detail_boxes,
    region_boxes,
    subject_box,
)
from vlm_instruct_gs.guidance.mask_rule import region_masks

H, W = 128, 192
CELL = 1000 / 32  # default grid: one cell in normalised units


def px_box(r0, r1, c0, c1):
    return Box.from_pixels(c0, r0, c1, r1, H, W)


def close(found: Box, expected: Box, tol: float = 1.5 * CELL) -> bool:
    pairs = zip((found.x1, found.y1, found.x2, found.y2), (expected.x1, expected.y1, expected.x2, expected.y2))
    return all(abs(a - b) <= tol for a, b in pairs)


def texture(h, w, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(h, w, 1, generator=g) - 0.5) * 0.8


@pytest.fixture()
def detail_scene():
    """GT textured in A and B; the render shows A at half contrast (emerging) and B still flat."""
    gt = torch.full((H, W, 3), 0.5)
    gt[16:64, 24:88] += texture(48, 64, 0)
    gt[64:112, 120:176] += texture(48, 56, 1)
    render = torch.full((H, W, 3), 0.5)
    render[16:64, 24:88] += 0.5 * (gt[16:64, 24:88] - 0.5)
    return render, gt


def test_detail_boxes_emerging_region_only(detail_scene):
    render, gt = detail_scene
    boxes = detail_boxes(render, gt)
    assert len(boxes) == 1 and boxes[0].label == "emerging detail"
    assert close(boxes[0], px_box(16, 64, 24, 88))


def test_detail_resolved_or_flat_gives_nothing(detail_scene):
    _, gt = detail_scene
    assert detail_boxes(gt, gt) == []  # fully resolved: ratio 1 > detail_max_ratio
    assert detail_boxes(torch.full((H, W, 3), 0.5), gt) == []  # nothing emerged yet
    assert detail_boxes(torch.full((H, W, 3), 0.5)) == []  # flat, no reference


def test_detail_without_reference_uses_render_energy(detail_scene):
    render, _ = detail_scene
    boxes = detail_boxes((render * 255).round().to(torch.uint8))  # uint8 accepted
    assert len(boxes) == 1 and close(boxes[0], px_box(16, 64, 24, 88))


def test_subject_from_colour_contrast():
    g = torch.Generator().manual_seed(3)
    img = torch.tensor([0.1, 0.3, 0.6]).expand(H, W, 3).clone()
    img[40:100, 100:160] = torch.tensor([0.9, 0.1, 0.1])
    img = (img + 0.02 * torch.randn(H, W, 3, generator=g)).clamp(0, 1)
    boxes = subject_box(img)
    assert len(boxes) == 1 and boxes[0].label == "subject"
    assert close(boxes[0], px_box(40, 100, 100, 160))
    pil = Image.fromarray((img.numpy() * 255).astype(np.uint8))
    assert close(subject_box(pil)[0], px_box(40, 100, 100, 160))


def test_subject_from_depth_on_textureless_image():
    flat = torch.full((H, W, 3), 0.4)
    depth = torch.full((H, W), 5.0)
    depth[20:60, 30:90] = 2.0
    depth[0:4, 0:4] = float("inf")  # missing values are ignored
    boxes = subject_box(flat, depth=depth)
    assert len(boxes) == 1 and close(boxes[0], px_box(20, 60, 30, 90))
    assert subject_box(flat) == []  # nothing salient without depth


def artifact_scene():
    g = torch.Generator().manual_seed(4)
    reference = torch.rand(H, W, 3, generator=g) * 0.2 + 0.4
    render = reference.clone()
    render[70:110, 10:60] = torch.rand(40, 50, 3, generator=g)  # floaters / smear
    render = (render + 0.01 * torch.randn(H, W, 3, generator=g)).clamp(0, 1)
    return render, reference


def test_artifacts_from_warped_reference():
    render, reference = artifact_scene()
    boxes = artifact_boxes(render, reference=reference)
    assert len(boxes) == 1 and boxes[0].label == "photometric inconsistency"
    assert close(boxes[0], px_box(70, 110, 10, 60))
    assert artifact_boxes(reference, reference=reference) == []  # consistent render


def test_artifacts_ignore_invalid_reference_pixels():
    render, reference = artifact_scene()
    reference = reference.clone()
    reference[0:40, 120:192] = 0.0  # hole in the warped reference
    valid = torch.ones(H, W, dtype=torch.bool)
    valid[0:40, 120:192] = False
    without = artifact_boxes(render, reference=reference)
    assert any(close(b, px_box(0, 40, 120, 192)) for b in without)
    with_valid = artifact_boxes(render, reference=reference, valid=valid)
    assert len(with_valid) == 1 and close(with_valid[0], px_box(70, 110, 10, 60))


def test_artifacts_from_error_map_and_worst_first():
    render, _ = artifact_scene()
    err = torch.zeros(H, W)
    err[0:32, 96:192] = 0.3
    err[96:128, 0:64] = 0.9
    boxes = artifact_boxes(render, error_map=(err * 255).to(torch.uint8))  # uint8 map read as 0-1
    assert len(boxes) == 2 and close(boxes[0], px_box(96, 128, 0, 64)) and close(boxes[1], px_box(0, 32, 96, 192))
    with pytest.raises(ValueError, match="reference"):
        artifact_boxes(render)


def test_region_boxes_components_min_cells_and_order():
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[0:2, 0:3] = True  # 6 cells
    mask[5:8, 5:8] = True  # 9 cells
    mask[4, 0] = True  # singleton, dropped
    mask[2, 3] = True  # diagonal neighbour joins the first region (8-connectivity)
    score = torch.ones(8, 8)
    boxes = region_boxes(mask, score, min_cells=2, max_boxes=5, label="r")
    assert boxes == [Box(625, 625, 1000, 1000, "r"), Box(0, 0, 500, 375, "r")]
    assert region_boxes(mask, score, 2, 1, "r") == boxes[:1]
    assert region_boxes(torch.zeros(4, 4, dtype=torch.bool), torch.ones(4, 4), 1, 3, "r") == []


def _hand_otsu(values, bins=64):
    """The hand-written Otsu the source used before scikit-image: the upper edge of the low class's last bin."""
    lo, hi = float(values.min()), float(values.max())
    hist = torch.histc(values, bins=bins, min=lo, max=hi).double()
    centres = lo + (torch.arange(bins, dtype=torch.float64) + 0.5) * (hi - lo) / bins
    w0, m0 = hist.cumsum(0), (hist * centres).cumsum(0)
    w1, m1 = w0[-1] - w0, m0[-1] - m0
    between = w0 * w1 * (m0 / w0.clamp_min(1e-6) - m1 / w1.clamp_min(1e-6)).square()
    return lo + (int(between[:-1].argmax()) + 1) * (hi - lo) / bins


def _hand_region_boxes(mask, score, min_cells, max_boxes, label):
    """The hand-written 8-connected labelling (max-label propagation) the source used before scikit-image."""
    gh, gw = mask.shape
    labels = torch.arange(1, gh * gw + 1, dtype=torch.float32).view(gh, gw) * mask.float()
    while True:
        grown = F.max_pool2d(labels[None, None], 3, stride=1, padding=1)[0, 0] * mask.float()
        if torch.equal(grown, labels):
            break
        labels = grown
    out = []
    for lab in labels.unique()[1:] if bool(mask.any()) else []:
        rows, cols = torch.nonzero(labels == lab, as_tuple=True)
        if len(rows) >= min_cells:
            mass = float(score[rows, cols].double().sum())
            box = Box.make(1000 * int(cols.min()) / gw, 1000 * int(rows.min()) / gh, 1000 * (int(cols.max()) + 1) / gw,
                           1000 * (int(rows.max()) + 1) / gh, label)
            out.append((mass, box))
    return [b for _, b in sorted(out, key=lambda mb: -mb[0])][:max_boxes]


def test_otsu_splits_bimodal_values():
    values = torch.cat([torch.full((50,), 0.1), torch.full((30,), 0.8)]) + torch.linspace(0, 0.005, 80)
    t = threshold_otsu(values.numpy(), nbins=64)  # each cluster within half a bin (range / 128) of its bottom
    assert torch.equal(values > float(t), torch.arange(80) >= 50)
    assert threshold_otsu(np.full(10, 0.3), nbins=64) == pytest.approx(0.3)  # constant input


@pytest.mark.parametrize("seed", range(5))
def test_otsu_is_the_hand_written_threshold_half_a_bin_lower(seed):
    """Same class split, stated difference: scikit-image returns the centre of the low class's last bin, the hand-
    written version its upper edge, so values in the upper half of that bin now count as foreground."""
    values = torch.rand(300, generator=torch.Generator().manual_seed(seed)) ** (1 + seed)
    half_bin = float(values.max() - values.min()) / 64 / 2
    assert float(threshold_otsu(values.numpy(), nbins=64)) == pytest.approx(_hand_otsu(values) - half_bin, abs=1e-6)


@pytest.mark.parametrize("seed", range(8))
def test_region_boxes_match_the_hand_written_labelling(seed):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(12, 16, generator=g) > 0.6
    score = torch.rand(12, 16, generator=g)  # distinct masses, so the order is defined
    assert region_boxes(mask, score, 2, 20, "r") == _hand_region_boxes(mask, score, 2, 20, "r")


def test_guide_interface_matches_vlm_path(detail_scene):
    render, gt = detail_scene
    guide = ImageEvidenceGuideConfig(grid=32).setup()
    assert isinstance(guide, ImageEvidenceGuide)
    per_image = guide.boxes("detail", [render, render[:64]], reference=[gt, None])
    assert len(per_image) == 2 and all(isinstance(b, Box) for boxes in per_image for b in boxes)
    (boxes,) = guide.boxes("subject", [render], depth=[torch.where(gt[..., 0] != 0.5, 1.0, 3.0)])
    background = region_masks("subject", boxes, H, W).densify
    assert background.shape == (H, W) and background.dtype == torch.bool
    assert bool(background[0, 0]) and not bool(background[40, 50])  # subject (textured A) excluded, background kept
    with pytest.raises(ValueError, match="phase"):
        guide.boxes("colour", [render])
    assert ImageEvidenceGuide(grid=16).config.grid == 16
