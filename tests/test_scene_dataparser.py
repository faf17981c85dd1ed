import shutil
from pathlib import Path

import pytest

from splat_core.data.scene_dataparser import SceneDataError, SceneDataParserConfig
from splat_core.testing import shared_scene


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
