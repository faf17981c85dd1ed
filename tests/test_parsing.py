"""parsing.py: canned Qwen3-VL grounding answers (good, messy, empty, garbage) and box rasterisation."""

import dataclasses
import logging
import random

import pytest
import torch

from vlm_instruct_gs.guidance.boxes import Box, boxes_to_mask
from vlm_instruct_gs.guidance.mask_rule import region_masks
from vlm_instruct_gs.guidance.parsing import parse_boxes

GOOD = '[{"bbox_2d": [100, 200, 300, 400], "label": "tree"}]'

CANNED = [
    # (name, answer, expected list of (x1, y1, x2, y2, label))
    ("plain", GOOD, [(100, 200, 300, 400, "tree")]),
    ("fenced", "```json\n" + GOOD + "\n```", [(100, 200, 300, 400, "tree")]),
    (
        "prose",
        "Sure! The detailed regions are:\n" + GOOD + "\nLet me know if you need anything else.",
        [(100, 200, 300, 400, "tree")],
    ),
    ("bbox key single object", '{"bbox": [10, 20, 30, 40], "label": "cup"}', [(10, 20, 30, 40, "cup")]),
    (
        "multiple fenced",
        '```json\n[\n  {"bbox_2d": [12, 40, 388, 512], "label": "brick wall"},\n'
        '  {"bbox_2d": [600, 100, 990, 450], "label": "tree foliage"},\n'
        '  {"bbox_2d": [450, 700, 520, 760], "label": "sign"}\n]\n```',
        [(12, 40, 388, 512, "brick wall"), (600, 100, 990, 450, "tree foliage"), (450, 700, 520, 760, "sign")],
    ),
    ("swapped and clamped", '[{"bbox_2d": [500, 600, 100, -20], "label": "x"}]', [(100, 0, 500, 600, "x")]),
    ("over range", '[{"bbox_2d": [900, 900, 1200, 1005]}]', [(900, 900, 1000, 1000, "")]),
    ("trailing commas", '[{"bbox_2d": [1, 2, 30, 40], "label": "a",},]', [(1, 2, 30, 40, "a")]),
    ("single quotes", "[{'bbox_2d': [10, 20, 30, 40], 'label': 'sky'}]", [(10, 20, 30, 40, "sky")]),
    (
        "truncated by max_new_tokens",
        '```json\n[\n {"bbox_2d": [1, 2, 30, 40], "label": "a"},\n {"bbox_2d": [50, 60',
        [(1, 2, 30, 40, "a")],
    ),
    ("bare list", "[120, 40, 560, 300]", [(120, 40, 560, 300, "")]),
    ("list of lists", "[[0, 0, 10, 10], [20, 20, 40, 40]]", [(0, 0, 10, 10, ""), (20, 20, 40, 40, "")]),
    ("fractions", '[{"bbox_2d": [0.1, 0.2, 0.5, 0.6]}]', [(100, 200, 500, 600, "")]),
    ("string numbers", '[{"bbox_2d": ["10", "20", "30", "40"], "label": 7}]', [(10, 20, 30, 40, "7")]),
    ("x1y1 dict", '{"bbox_2d": {"x1": 5, "y1": 6, "x2": 7, "y2": 8}}', [(5, 6, 7, 8, "")]),
    ("wrapper object", '{"regions": [{"bbox_2d": [1, 1, 2, 2], "label": "r"}]}', [(1, 1, 2, 2, "r")]),
    ("think block", "<think>maybe [1, 2, 3, 4]?</think>\n" + GOOD, [(100, 200, 300, 400, "tree")]),
    ("json lines", '{"bbox_2d": [1, 1, 5, 5]}\n{"bbox_2d": [6, 6, 9, 9]}', [(1, 1, 5, 5, ""), (6, 6, 9, 9, "")]),
    (
        "qwen2 pair tokens",
        "<|object_ref_start|>car<|object_ref_end|><|box_start|>(10,20),(300,400)<|box_end|>",
        [(10, 20, 300, 400, "car")],
    ),
    ("brackets in prose before", "See [1] for details: " + GOOD, [(100, 200, 300, 400, "tree")]),
    ("zero area dropped", '[{"bbox_2d": [5, 5, 5, 90]}, {"bbox_2d": [1, 1, 2, 2]}]', [(1, 1, 2, 2, "")]),
]


@pytest.mark.parametrize("name,answer,expected", CANNED, ids=[c[0] for c in CANNED])
def test_parse_canned(name, answer, expected):
    boxes = parse_boxes(answer)
    assert [(b.x1, b.y1, b.x2, b.y2, b.label) for b in boxes] == [tuple(map_num(e)) for e in expected]
    for b in boxes:
        assert 0 <= b.x1 <= b.x2 <= 1000 and 0 <= b.y1 <= b.y2 <= 1000


def map_num(e):
    return [float(v) for v in e[:4]] + [e[4]]


@pytest.mark.parametrize("answer", ["[]", "```json\n[]\n```", "No regions found: []"])
def test_explicit_empty_list_is_silent(answer, caplog):
    with caplog.at_level(logging.WARNING):
        assert parse_boxes(answer) == []
    assert not caplog.records


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "   \n",
        None,
        "I cannot determine any regions in this image.",
        "[1, 2]",
        '{"label": "no box here"}',
        '```json\n[{"bbox_2d": [1, 2, 3]}]\n```',
        '}{][ ,,, ::: "bbox_2d"',
    ],
)
def test_empty_or_garbage_warns(answer, caplog):
    with caplog.at_level(logging.WARNING, logger="vlm_instruct_gs.guidance.parsing"):
        assert parse_boxes(answer) == []
    assert any(r.levelno == logging.WARNING for r in caplog.records)


def test_malformed_record_skipped_others_kept(caplog):
    answer = '[{"bbox_2d": [1, 2, 3]}, {"bbox_2d": [10, 10, 20, 20], "label": "ok"}]'
    with caplog.at_level(logging.WARNING):
        boxes = parse_boxes(answer)
    assert [b.label for b in boxes] == ["ok"]
    assert any("malformed" in r.getMessage() for r in caplog.records)


def test_never_raises_on_random_text():
    rng = random.Random(0)
    alphabet = "[]{}(),:\"' 0123456789.-abcxyz_\n`bbox_2dlabel"
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        for b in parse_boxes(text):
            assert isinstance(b, Box) and 0 <= b.x1 < b.x2 <= 1000 and 0 <= b.y1 < b.y2 <= 1000


def test_box_is_immutable_and_serialises():
    box = Box.make(300, 400, 100, 200, "a")
    assert (box.x1, box.y1, box.x2, box.y2) == (100, 200, 300, 400)
    with pytest.raises(dataclasses.FrozenInstanceError):
        box.x1 = 0  # type: ignore[misc]
    assert box.to_json() == {"bbox_2d": [100.0, 200.0, 300.0, 400.0], "label": "a"}
    assert parse_boxes(str([box.to_json()]).replace("'", '"')) == [box]
    assert box.area == pytest.approx(0.2 * 0.2)


def test_pixel_rounding_documented_cases():
    assert Box(0, 0, 500, 500).to_pixels(4, 4) == (0, 0, 2, 2)
    assert Box(100, 0, 150, 1000).to_pixels(10, 10) == (1, 0, 2, 10)  # 1.0..1.5 px touches column 1 only
    assert Box(333, 333, 334, 334).to_pixels(3, 3) == (0, 0, 2, 2)  # 0.999..1.002 touches columns 0 and 1
    assert Box(0, 0, 1000, 1000).to_pixels(7, 5) == (0, 0, 5, 7)


def test_from_pixels_round_trip():
    rng = random.Random(1)
    for _ in range(200):
        h, w = rng.randint(1, 900), rng.randint(1, 900)
        c0, c1 = sorted(rng.sample(range(w + 1), 2)) if w > 1 else (0, 1)
        r0, r1 = sorted(rng.sample(range(h + 1), 2)) if h > 1 else (0, 1)
        assert Box.from_pixels(c0, r0, c1, r1, h, w).to_pixels(h, w) == (c0, r0, c1, r1)


def _slow_mask(boxes, h, w):
    """Reference: a pixel is in when its unit square overlaps a box with positive area."""
    out = torch.zeros(h, w, dtype=torch.bool)
    for b in boxes:
        x1, x2, y1, y2 = b.x1 * w / 1000, b.x2 * w / 1000, b.y1 * h / 1000, b.y2 * h / 1000
        for r in range(h):
            for c in range(w):
                if min(c + 1, x2) - max(c, x1) > 1e-9 and min(r + 1, y2) - max(r, y1) > 1e-9:
                    out[r, c] = True
    return out


def test_boxes_to_mask_matches_slow_loop():
    rng = random.Random(2)
    for _ in range(20):
        h, w = rng.randint(1, 17), rng.randint(1, 23)
        boxes = [Box.make(*[rng.uniform(0, 1000) for _ in range(4)]) for _ in range(rng.randint(0, 3))]
        mask = boxes_to_mask(boxes, h, w)
        assert mask.shape == (h, w) and mask.dtype == torch.bool
        assert torch.equal(mask, _slow_mask(boxes, h, w))


def test_boxes_to_mask_and_the_phase_rule_on_it():
    boxes = [Box(0, 0, 500, 1000)]
    mask = boxes_to_mask(boxes, 2, 4)
    assert mask.tolist() == [[True, True, False, False]] * 2
    assert torch.equal(region_masks("detail", boxes, 2, 4).densify, mask)
    assert torch.equal(region_masks("artifacts", boxes, 2, 4).densify, mask)
    assert torch.equal(region_masks("subject", boxes, 2, 4).densify, ~mask)
    with pytest.raises(ValueError, match="phase"):
        region_masks("colour", boxes, 2, 4)
    with pytest.raises(ValueError):
        boxes_to_mask(boxes, 0, 4)
