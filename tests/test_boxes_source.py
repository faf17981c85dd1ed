"""The ``boxes`` guidance source: file format, regions per phase, one-line errors, and guided training driven by it."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from splat_core.testing import SHARED_DATA, write_transforms_scene
from vlm_instruct_gs.guidance.boxes import Box, boxes_to_mask
from vlm_instruct_gs.guidance.boxes_file import BoxesFileSource, load_boxes_file
from vlm_instruct_gs.guidance.image_evidence import ImageEvidenceGuideConfig
from vlm_instruct_gs.guidance.phases import GuidanceSchedule
from vlm_instruct_gs.guidance.sources import GuidanceSetupError, build_guidance_source
from vlm_instruct_gs.guidance.vlm_backend import VLMBackendConfig
from vlm_instruct_gs.testing.guided_runs import ANSWER, FixedAnswerBackend
from vlm_instruct_gs.testing.guided_runs import guided_pipeline as _pipeline
from vlm_instruct_gs.testing.guided_runs import same as _same
from vlm_instruct_gs.testing.guided_runs import train_steps as _train

DESK_BOXES = "configs/guidance/desk_vr_background_boxes.json"
CAN_BOXES = "configs/guidance/beer_can_subject_boxes.json"


def _write(tmp_path, doc, name="boxes.json"):
    path = tmp_path / name
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return path


def test_regions_per_phase_from_boxes_and_masks(tmp_path):
    mask = np.zeros((4, 5), dtype=np.uint8)
    mask[0, 0] = 255  # top-left quarter-ish cell of a 4x5 mask: rows [0, 5), columns [0, 4) at 20 x 20
    Image.fromarray(mask).save(tmp_path / "m.png")
    path = _write(tmp_path, {"images": {
        "a.png": {"background": [[0, 0, 500, 1000]], "detail": {"boxes": [], "masks": ["m.png"]},
                  "artifacts": [{"bbox_2d": [0, 0, 500, 500], "label": "floating blob"},
                                {"bbox_2d": [500, 500, 1000, 1000], "label": "blurry wall"}]},
        "dir/b.png": {"subject": [{"bbox_2d": [0, 0, 500, 1000], "label": "desk"}]},
    }})
    source = BoxesFileSource(path)
    left = torch.zeros(20, 20, dtype=torch.bool)
    left[:, :10] = True
    bg = source.regions("subject", "a.png", 20, 20)
    assert torch.equal(bg.densify, left) and bg.floaters is None  # 'background' is the region itself
    assert torch.equal(source.regions("subject", "b.png", 20, 20).densify, ~left)  # 'subject': its complement
    detail = source.regions("detail", "a.png", 20, 20)
    expected = torch.zeros(20, 20, dtype=torch.bool)
    expected[:5, :4] = True  # the mask's one pixel, resized nearest from 4x5 to 20x20
    assert torch.equal(detail.densify, expected)
    assert torch.equal(source.regions("detail", "a.png", 20, 20, detail_target="complement").densify, ~expected)
    art = source.regions("artifacts", "a.png", 20, 20)
    blurry = boxes_to_mask([Box(500, 500, 1000, 1000)], 20, 20)
    assert torch.equal(art.densify, blurry)  # the floater box is not densified ...
    assert torch.equal(art.floaters, blurry | boxes_to_mask([Box(0, 0, 500, 500)], 20, 20))  # ... all are searched
    assert source.regions("detail", "b.png", 20, 20) == (None, None)  # no entry: no guidance, never everything
    assert source.names_for("subject") == ["a.png", "b.png"] and source.has_region("detail", "a.png")
    assert source.boxes("artifacts", [None, None], image_names=["a.png", "x.png"])[1] == []
    source.check_image_names(["/data/images/a.png", "b.png"])


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "cannot be read"),
        ("{not json", "is not valid JSON"),
        ({"frames": {}}, 'expected {"images"'),
        ({"images": {"a.png": {"sky": [[0, 0, 10, 10]]}}}, "unknown phase keys ['sky']"),
        ({"images": {"a.png": {"detail": [[0, 0, 10]]}}}, "a box is [x1, y1, x2, y2]"),
        ({"images": {"a.png": {"detail": [[0, 0, 1200, 10]]}}}, "needs 0 <= x1 < x2 <= 1000"),
        ({"images": {"a.png": {"detail": {"masks": ["missing.png"]}}}}, "mask"),
        ({"images": {"a.png": {"background": [], "subject": []}}}, "not both"),
    ],
)
def test_invalid_files_are_one_line_errors_naming_the_file(tmp_path, content, message):
    path = tmp_path / "boxes.json" if content is None else _write(tmp_path, content)
    with pytest.raises(GuidanceSetupError) as err:
        build_guidance_source("boxes", VLMBackendConfig(), ImageEvidenceGuideConfig(), path)
    text = str(err.value.code)
    assert text.startswith(f"error: --pipeline.guidance.boxes-file {path}: ") and message in text
    assert "\n" not in text


def test_missing_file_flag_and_unknown_image_names(tmp_path):
    with pytest.raises(GuidanceSetupError, match="needs --pipeline.guidance.boxes-file"):
        build_guidance_source("boxes", VLMBackendConfig(), ImageEvidenceGuideConfig(), None)
    source = BoxesFileSource(_write(tmp_path, {"images": {"a.png": {"detail": []}, "zz.png": {"detail": []},
                                                          "held.png": {"detail": []}}}))
    source.check_image_names(["a.png", "zz.png"], ["held.png"])  # held-out images may be named
    with pytest.raises(GuidanceSetupError, match=r"1 image name\(s\) not in the scene: zz.png; training images"):
        source.check_image_names(["a.png"], ["held.png"])


def test_committed_desk_vr_background_boxes_cover_every_frame():
    entries = load_boxes_file(DESK_BOXES)
    assert all(set(p) == {"subject"} for p in entries.values())  # stored under the 'background' key
    source = BoxesFileSource(DESK_BOXES)
    for name in entries:
        region = source.regions("subject", name, 535, 953).densify
        assert 0.3 < float(region.float().mean()) < 0.8  # a border around the subject, not all or nothing
        assert not bool(region[267, 476])  # the image centre (the laptop) is never background
    images = SHARED_DATA / "desk_vr" / "images_2"
    if images.is_dir():
        source.check_image_names([p.name for p in images.glob("*.jpg")])
        assert len(entries) == len(list(images.glob("*.jpg")))


def test_committed_beer_can_subject_boxes_cover_every_frame():
    entries = load_boxes_file(CAN_BOXES)
    assert len(entries) == 71 and all(set(p) == {"subject"} for p in entries.values())
    source = BoxesFileSource(CAN_BOXES)
    for name in entries:
        background = source.regions("subject", name, 320, 180).densify  # 4x: 180x320 portrait
        assert 0.75 < float(background.float().mean()) < 0.99  # the can is a small part of each frame
    images = SHARED_DATA / "beer_can" / "images_4"
    if images.is_dir():
        source.check_image_names([p.name for p in images.glob("*.jpg")])
        assert len(entries) == len(list(images.glob("*.jpg")))


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return write_transforms_scene(tmp_path_factory.mktemp("scene"))


def test_a_boxes_file_steers_training_exactly_as_the_same_vlm_answer(scene, tmp_path):
    """The file's detail box for every image equals a VLM answering that box about every view: same run."""
    box = json.loads(ANSWER.split("\n")[1])
    names = [f"{i:03d}.png" for i in range(8)]
    path = _write(tmp_path, {"images": {n: {"detail": box} for n in names}})
    schedule = GuidanceSchedule(detail_start=2, detail_stop=6, detail_every=2, subject_every=0, artifacts_every=0)
    vlm = _train(_pipeline(scene, "vlm", vlm=VLMBackendConfig(_target=FixedAnswerBackend), schedule=schedule))
    pipeline = _pipeline(scene, "boxes", boxes_file=path, schedule=schedule)
    boxes = _train(pipeline, out_dir=tmp_path / "guidance")
    assert _same(boxes, vlm) and not _same(boxes, _train(_pipeline(scene, "none")))
    assert [a["phase"] for a in pipeline.guidance.applied] == ["detail", "detail"]
    record = json.loads(next((tmp_path / "guidance").glob("step_00002_detail_view_00.json")).read_text())
    assert record["source"] == "boxes" and record["mask"]


def test_boxes_pipeline_rejects_unknown_image_names_at_set_up(scene, tmp_path):
    path = _write(tmp_path, {"images": {"frame_9999.png": {"background": [[0, 0, 500, 500]]}}})
    with pytest.raises(GuidanceSetupError, match="frame_9999.png"):
        _pipeline(scene, "boxes", boxes_file=path)
