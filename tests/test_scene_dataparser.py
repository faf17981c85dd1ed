import shutil
from pathlib import Path

import pytest

from splat_core.data.scene_dataparser import SceneDataError, SceneDataParserConfig
from splat_core.testing import shared_scene, write_colmap_scene


def _outputs(data: Path, split="train", **kwargs):
    return SceneDataParserConfig(data=data, **kwargs).setup().get_dataparser_outputs(split)


def test_missing_folder_is_one_clear_error(tmp_path):
    with pytest.raises(SceneDataError, match=r"data folder .*nope does not exist; expected .*sparse/0"):
        _outputs(tmp_path / "nope")


def test_folder_without_model_or_transforms(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(SceneDataError, match="no COLMAP model .* and no transforms.json"):
        _outputs(tmp_path)


def test_transforms_folder_gets_random_initial_points(transforms_scene):
    out = _outputs(transforms_scene, num_random_points=37)
    assert out.metadata["points3D_xyz"].shape == (37, 3)
    assert len(out.image_filenames) == 7  # eval-interval 8 keeps one of the 8 frames for eval
    assert "points3D_xyz" not in _outputs(transforms_scene, split="test").metadata


def test_far_points_share_out_of_range_is_a_clear_error(transforms_scene):
    with pytest.raises(SceneDataError, match="random initial points: far_share must be in"):
        _outputs(transforms_scene, random_far_share=1.5)
    far = _outputs(transforms_scene, num_random_points=20, random_far_share=0.5)
    assert far.metadata["points3D_xyz"].shape == (20, 3)


def test_sfm_init_without_points_is_a_clear_error(transforms_scene):
    with pytest.raises(SceneDataError, match="--init sfm needs SfM points"):
        _outputs(transforms_scene, init="sfm")


def test_unreadable_image_names_the_file(transforms_scene):
    (transforms_scene / "images" / "002.png").write_bytes(b"not a png")
    with pytest.raises(SceneDataError, match=r"image .*002.png cannot be read"):
        _outputs(transforms_scene)


def test_missing_image_names_the_file(transforms_scene):
    (transforms_scene / "images" / "003.png").unlink()
    with pytest.raises(SceneDataError, match=r"image .*003.png listed by the scene does not exist"):
        _outputs(transforms_scene)


def test_3dgs_colmap_layout_with_no_flags():
    scene = shared_scene("beer_can")
    out = _outputs(scene, downscale_factor=4)
    assert all("images_4" in str(p) for p in out.image_filenames)
    assert out.metadata["points3D_xyz"].shape == (100, 3)
    sfm = _outputs(scene, downscale_factor=4, init="sfm")
    assert sfm.metadata["points3D_xyz"].shape[0] > 1000


def test_colmap_model_without_images_folder(tmp_path):
    scene = shared_scene("beer_can")
    shutil.copytree(scene / "sparse", tmp_path / "sparse")
    with pytest.raises(SceneDataError, match="images not found next to the COLMAP model"):
        _outputs(tmp_path)


# ---------------------------------------------------------------- bad input (issue 10, items 4-8 and 12)
@pytest.fixture
def colmap_scene(tmp_path) -> Path:
    return write_colmap_scene(tmp_path / "scene")


def test_tiny_colmap_scene_parses(colmap_scene):
    out = _outputs(colmap_scene, downscale_factor=1, num_random_points=20)
    assert len(out.image_filenames) == 7 and out.metadata["points3D_xyz"].shape == (20, 3)


def test_truncated_jpeg_names_the_file(colmap_scene):
    path = colmap_scene / "images" / "004.jpg"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # header intact, scan data cut
    with pytest.raises(SceneDataError, match=r"image .*004.jpg cannot be read \(OSError: image file is truncated"):
        _outputs(colmap_scene, downscale_factor=1)


def test_image_of_another_size_names_the_file(colmap_scene):
    from PIL import Image

    Image.new("RGB", (40, 24)).save(colmap_scene / "images" / "002.jpg")
    with pytest.raises(SceneDataError, match=r"image .*002.jpg is 40x24 pixels but its camera is 32x24"):
        _outputs(colmap_scene, downscale_factor=1)


@pytest.mark.parametrize("name, damage", [("images.bin", 0.5), ("images.bin", 0), ("images.bin", "random"),
                                          ("cameras.bin", 0.3), ("points3D.bin", 0.5)])
def test_corrupt_colmap_file_is_named(colmap_scene, name, damage):
    import os

    path = colmap_scene / "sparse" / "0" / name
    data = path.read_bytes()
    path.write_bytes(os.urandom(len(data)) if damage == "random" else data[: int(damage * len(data))])
    with pytest.raises(SceneDataError, match=rf"sparse/0/{name} is truncated or corrupt \(") as err:
        _outputs(colmap_scene, downscale_factor=1)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("factor", [0, -2])
def test_downscale_factor_below_one(colmap_scene, factor):
    with pytest.raises(SceneDataError, match=rf"--downscale-factor must be a whole number >= 1.*got {factor}"):
        _outputs(colmap_scene, downscale_factor=factor)


def test_missing_downscaled_folder_without_a_terminal(colmap_scene, monkeypatch):
    import splat_core.data.scene_dataparser as sdp

    monkeypatch.setattr(sdp, "stdin_is_terminal", lambda: False)
    with pytest.raises(SceneDataError, match=r"no images_8/ for --downscale-factor 8 .*\(it has images/\)"):
        _outputs(colmap_scene, downscale_factor=8)
    assert sorted(p.name for p in colmap_scene.iterdir()) == ["images", "sparse"]  # nothing left in the scene
    (colmap_scene / "images_8").mkdir()  # an empty folder (what nerfstudio's "y" without ffmpeg left)
    with pytest.raises(SceneDataError, match=r"images_8 lacks 8 of the 8 files"):
        _outputs(colmap_scene, downscale_factor=8)


@pytest.mark.parametrize("answer", [True, False])
def test_missing_downscaled_folder_asked_on_a_terminal(colmap_scene, monkeypatch, answer):
    import splat_core.data.scene_dataparser as sdp

    monkeypatch.setattr(sdp, "stdin_is_terminal", lambda: True)
    monkeypatch.setattr(sdp.Confirm, "ask", lambda *a, **k: answer)
    if not answer:
        with pytest.raises(SceneDataError, match=r"no images_2/ for --downscale-factor 2"):
            _outputs(colmap_scene, downscale_factor=2)
        assert not (colmap_scene / "images_2").exists()
        return
    out = _outputs(colmap_scene, downscale_factor=2)
    assert all(p.parent.name == "images_2" and p.is_file() for p in out.image_filenames)
    assert int(out.cameras.width[0]) == 16 and int(out.cameras.height[0]) == 12
    assert sorted(p.name for p in colmap_scene.iterdir()) == ["images", "images_2", "sparse"]  # no partial folder


def test_failed_downscale_leaves_nothing(colmap_scene):
    from splat_core.data.scene_dataparser import write_downscaled

    files = sorted((colmap_scene / "images").glob("*.jpg"))
    files[5].write_bytes(b"not an image")
    with pytest.raises(SceneDataError, match="could not write .*images_4.*nothing was left"):
        write_downscaled(files, colmap_scene / "images", colmap_scene / "images_4", 4)
    assert sorted(p.name for p in colmap_scene.iterdir()) == ["images", "sparse"]


def test_transforms_with_one_frame(transforms_scene):
    import json

    meta = json.loads((transforms_scene / "transforms.json").read_text())
    meta["frames"] = meta["frames"][:1]
    (transforms_scene / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(SceneDataError, match=r"transforms.json has 1 frame\(s\); at least 2 camera poses"):
        _outputs(transforms_scene)


def test_transforms_frame_without_matrix_names_the_frame(transforms_scene):
    import json

    meta = json.loads((transforms_scene / "transforms.json").read_text())
    del meta["frames"][5]["transform_matrix"]
    (transforms_scene / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(SceneDataError, match=r"frame 5 \(images/005.png\) has no 'transform_matrix'"):
        _outputs(transforms_scene)
