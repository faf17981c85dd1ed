"""LERF-OVS label parsing and LangSplat-protocol metrics on a label file written here."""

import json

import cv2
import numpy as np
import pytest
import torch

from fmgs_field.evaluation import (
    evaluate_frame,
    feature_fidelity,
    frame_label_sums,
    label_metrics_from_means,
    load_frame_labels,
    load_lerf_ovs_labels,
    localization_hit,
    majority_smooth,
    mask_iou,
    mean_filter,
    polygon_to_mask,
    relevancy_to_mask,
    summarize,
)


def _square(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


@pytest.fixture()
def label_dir(tmp_path):
    frame = {
        "info": {"name": "frame_00012.jpg", "width": 120, "height": 100},
        "objects": [
            {"category": "cup", "segmentation": _square(40, 40, 59, 59), "bbox": [40, 40, 59, 59]},
            {"category": "cup", "segmentation": _square(90, 70, 94, 74), "bbox": [94, 74, 90, 70]},
            {"category": "plate", "segmentation": [[10, 5], [30, 5], [20, 15]]},  # no bbox: polygon extent
        ],
    }
    (tmp_path / "frame_00012.json").write_text(json.dumps(frame))
    other = {"info": {"name": "frame_00003.jpg", "width": 80, "height": 60}, "objects": []}
    (tmp_path / "frame_00003.json").write_text(json.dumps(other))
    (tmp_path / "notes.json").write_text("{}")  # not a frame file
    return tmp_path


def test_label_parsing(label_dir):
    labels = load_lerf_ovs_labels(label_dir)
    assert sorted(labels) == [2, 11]
    frame = labels[11]
    assert (frame.name, frame.height, frame.width) == ("frame_00012.jpg", 100, 120)
    assert set(frame.masks) == {"cup", "plate"}
    cup = frame.masks["cup"]
    assert cup.shape == (100, 120) and cup.dtype == torch.bool
    assert cup.sum().item() == 20 * 20 + 5 * 5  # two squares, boundaries included, merged
    assert cup[40, 40] and cup[59, 59] and cup[72, 92] and not cup[39, 40] and not cup[60, 59]
    assert frame.boxes["cup"].tolist() == [[40, 40, 59, 59], [94, 74, 90, 70]]
    assert frame.boxes["plate"].tolist() == [[10, 5, 30, 15]]
    assert load_frame_labels(label_dir / "frame_00003.json").masks == {}


def _langsplat_polygon_to_mask(img_shape, points_list):
    """LangSplat's eval/utils.py ``polygon_to_mask``, kept here as the reference."""
    points = np.asarray(points_list, dtype=np.int32)
    mask = np.zeros(img_shape, dtype=np.uint8)
    cv2.fillPoly(mask, [points], 1)
    return mask


def test_polygon_rasterisation_is_langsplats():
    # integer and fractional vertices (truncated as np.int32 does), a slanted triangle, a concave polygon
    polygons = (_square(3, 4, 20, 11), [[2, 2], [25, 5], [10, 22]], [[1.9, 3.7], [28.2, 2.5], [14.5, 27.9]],
                [[2, 2], [27, 2], [27, 27], [15, 10], [2, 27]])
    for poly in polygons:
        ours = polygon_to_mask(poly, 30, 30)
        assert ours.dtype == torch.bool and ours.shape == (30, 30)
        np.testing.assert_array_equal(ours.numpy(), _langsplat_polygon_to_mask((30, 30), poly).astype(bool))
    assert polygon_to_mask(_square(3, 4, 20, 11), 30, 30).sum() == 18 * 8  # boundary rows and columns included
    assert polygon_to_mask([], 5, 6).sum() == 0


def test_mean_filter_matches_cv2_filter2d():
    torch.manual_seed(0)
    values = torch.rand(37, 45)
    assert torch.allclose(mean_filter(torch.full((8, 9), 0.3), 5), torch.full((8, 9), 0.3))
    # interior pixel, kernel 3: the plain local mean
    assert torch.isclose(mean_filter(values, 3)[10, 10], values[9:12, 9:12].mean())
    for k in (30, 5, 4):  # k x k box means with reflect-101 borders (gfedcb|abcdefgh|gfedcba), by hand
        lo, hi = k // 2, k - 1 - k // 2
        rows = np.abs(np.arange(-lo, 37 + hi))
        rows = np.where(rows > 36, 72 - rows, rows)
        cols = np.abs(np.arange(-lo, 45 + hi))
        cols = np.where(cols > 44, 88 - cols, cols)
        padded = values.double().numpy()[rows][:, cols]
        ref = np.lib.stride_tricks.sliding_window_view(padded, (k, k)).mean(axis=(-1, -2))
        np.testing.assert_allclose(mean_filter(values, k).numpy(), ref, rtol=0, atol=1e-5)
        np.testing.assert_allclose(mean_filter(values.double(), k).numpy(), ref, rtol=0, atol=1e-12)


def _langsplat_smooth(mask):
    """LangSplat's eval/utils.py ``smooth``, kept here as the slow reference."""
    h, w = mask.shape[:2]
    out = mask.copy()
    s = 3
    for i in range(h):
        for j in range(w):
            square = mask[max(0, i - s) : min(i + s + 1, h - 1), max(0, j - s) : min(j + s + 1, w - 1)]
            out[i, j] = np.argmax(np.bincount(square.reshape(-1)))
    return out


def test_majority_smooth_matches_langsplat_loop():
    rng = np.random.default_rng(0)
    for density in (0.3, 0.5, 0.7):
        mask = (rng.random((23, 31)) < density).astype(np.uint8)
        ours = majority_smooth(torch.from_numpy(mask.astype(bool))).numpy().astype(np.uint8)
        np.testing.assert_array_equal(ours, _langsplat_smooth(mask))


def test_mask_and_iou_by_hand():
    gt = torch.zeros(40, 40, dtype=torch.bool)
    gt[10:20, 10:20] = True
    rel = torch.zeros(40, 40)
    rel[12:22, 12:22] = 1.0
    # kernel 1 (no blur) and radius 0 (no vote) leave the thresholded map unchanged away from the last row/column
    pred = relevancy_to_mask(rel, kernel=1, radius=0)
    assert torch.equal(pred, rel > 0.5)
    assert mask_iou(pred, gt) == pytest.approx(64 / 136)  # overlap 8 x 8, union 100 + 100 - 64
    assert mask_iou(gt, gt) == 1.0
    assert mask_iou(torch.zeros_like(gt), torch.zeros_like(gt)) == 0.0
    # the threshold applies to clip(2 n - 1, 0, 1): n = 0.69 is out, n = 0.71 is in
    ramp = torch.zeros(3, 5)
    ramp[1, :4] = torch.tensor([0.0, 0.69, 0.71, 1.0])
    assert relevancy_to_mask(ramp, kernel=1, radius=0)[1, :4].tolist() == [False, False, True, True]


def test_localization_hit_and_miss():
    # A 6 x 6 blob under the 30 x 30 box filter: the maxima form the plateau of windows containing the whole blob.
    rel = torch.zeros(100, 120)
    rel[47:53, 47:53] = 1.0
    boxes = torch.tensor([[40.0, 40, 59, 59], [94, 74, 90, 70]])
    assert localization_hit(rel, boxes)
    rel2 = torch.zeros(100, 120)
    rel2[20:26, 90:96] = 1.0  # plateau rows 11..35: above the second box
    assert not localization_hit(rel2, boxes)
    assert localization_hit(rel2, torch.tensor([[100.0, 30, 85, 10]]))  # corners in any order
    # Near a border, reflect-101 padding mirrors the blob and pulls the maximum to the edge (as cv2 does).
    rel3 = torch.zeros(100, 120)
    rel3[12:18, 60:66] = 1.0
    assert not localization_hit(rel3, torch.tensor([[60.0, 12, 65, 17]]))


def test_evaluate_frame_and_summary(label_dir):
    frame = load_frame_labels(label_dir / "frame_00012.json")
    good = frame.masks["cup"].float() * 0.9 + 0.05
    bad = torch.zeros(100, 120)
    bad[70:90, 0:20] = 1.0
    result = evaluate_frame({"cup": good, "plate": bad}, frame)
    iou_cup, hit_cup = result["cup"]
    iou_plate, hit_plate = result["plate"]
    assert hit_cup and not hit_plate
    assert iou_cup > 0.5 and iou_plate == 0.0
    metrics = summarize([result, {}])
    assert metrics["num_queries"] == 2
    assert metrics["localization_accuracy"] == 0.5
    assert metrics["miou"] == pytest.approx((iou_cup + iou_plate) / 2)
    with pytest.raises(ValueError):
        evaluate_frame({"cup": good[:30], "plate": bad}, frame)


def test_feature_fidelity():
    torch.manual_seed(0)
    teacher = torch.randn(6, 8, 16)
    assert feature_fidelity(teacher * 2.0, teacher).item() == pytest.approx(1.0, abs=1e-5)
    assert feature_fidelity(-teacher, teacher).item() == pytest.approx(-1.0, abs=1e-5)
    # a constant rendered map at twice the resolution is resized first
    rendered = torch.zeros(12, 16, 16)
    rendered[..., 0] = 1.0
    expected = torch.nn.functional.normalize(teacher, dim=-1)[..., 0].mean()
    assert feature_fidelity(rendered, teacher).item() == pytest.approx(expected.item(), abs=1e-5)


def test_label_sums_average_to_pair_weighted_metrics():
    """nerfstudio averages per-frame metrics; sums turn that back into LangSplat's mean over (frame, category)."""
    frames = [{"cup": (0.5, True), "plate": (0.1, False)}, {"cup": (0.8, True)}, {}]  # the last frame is unlabelled
    sums = [frame_label_sums(f) for f in frames]
    assert sums[0] == {"lerf_ovs_iou_sum": 0.6, "lerf_ovs_hits": 1.0, "lerf_ovs_queries": 2.0}
    assert sums[2] == {"lerf_ovs_iou_sum": 0.0, "lerf_ovs_hits": 0.0, "lerf_ovs_queries": 0.0}
    averaged = {k: sum(s[k] for s in sums) / 3 for k in sums[0]}
    averaged.update(psnr=20.0, lerf_ovs_queries_std=0.5)
    out = label_metrics_from_means(dict(averaged), num_frames=3)
    assert out["miou"] == pytest.approx((0.5 + 0.1 + 0.8) / 3) == summarize(frames)["miou"]
    assert out["localization_accuracy"] == pytest.approx(2 / 3) and out["num_label_queries"] == 3.0
    assert out["psnr"] == 20.0 and not any(k.startswith("lerf_ovs") for k in out)
    assert label_metrics_from_means({"psnr": 20.0}, 3) == {"psnr": 20.0}
