"""Scene dataparser: the 3DGS COLMAP layout with no flags, nerfstudio ``transforms.json`` folders, clear errors.

nerfstudio's ``colmap`` dataparser looks for ``colmap/sparse/0``; the 3DGS layout this project uses (and most public
captures ship) is ``images/`` + ``sparse/0/``. :class:`SceneDataParserConfig` subclasses nerfstudio's
``ColmapDataParserConfig``, so tyro maps it onto the ``colmap`` subcommand and ``ns-train vlm-fastgs --data scene
colmap --downscale-factor 4`` keeps every colmap flag while finding ``sparse/0``. A folder with ``transforms.json``
(and no COLMAP model) is handed to nerfstudio's own ``NerfstudioDataParser``.

It also owns the initial point cloud (``init``): SfM points or ``num_random_points`` random points where the
training cameras look (:func:`~splat_core.data.init_points.random_points_in_view`), handed to the model as
``points3D_xyz``/``points3D_rgb`` so any Gaussian method (splatfacto too) starts from the same points.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Literal, Type

from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
from nerfstudio.data.dataparsers.colmap_dataparser import ColmapDataParser, ColmapDataParserConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.utils.rich_utils import CONSOLE
from PIL import Image, UnidentifiedImageError

from splat_core.data.init_points import random_points_in_view

EXPECTED_LAYOUT = (
    "expected a scene folder with images/ + sparse/0/ (COLMAP, 3DGS layout), images/ + colmap/sparse/0/, "
    "or a nerfstudio transforms.json"
)
COLMAP_FALLBACKS = (Path("sparse/0"), Path("colmap/sparse/0"), Path("sparse"))


class SceneDataError(SystemExit):
    """Bad input data: exits with status 1 and prints this one line (no traceback) when uncaught.

    A ``SystemExit`` subclass because the error reaches the user through ns-train/ns-eval/ns-viewer, whose entry
    points we do not own; tests catch it like any exception.
    """

    def __init__(self, message: str):
        super().__init__(f"error: {message}")


@dataclass
class SceneDataParserConfig(ColmapDataParserConfig):
    """COLMAP (``images/`` + ``sparse/0``) or nerfstudio ``transforms.json`` scene, detected from the folder."""

    _target: Type = field(default_factory=lambda: SceneDataParser)
    colmap_path: Path = Path("sparse/0")
    """COLMAP model folder relative to the data path; if absent, sparse/0, colmap/sparse/0 and sparse are tried."""
    init: Literal["random", "sfm"] = "random"
    """Initial points: 'random' (num_random_points where the training cameras look) or 'sfm' (the COLMAP points3D,
    or the transforms.json ply_file_path)."""
    num_random_points: int = 100
    """Number of random initial points when init is 'random'."""
    init_seed: int = 0
    """Seed of the random initial points (the same scene and seed give the same points for every method)."""
    min_views: int = 2
    """A random initial point is kept only where at least this many training cameras see it."""
    check_images: bool = True
    """Open every image header at start-up, so an unreadable file is one clear error instead of a crash mid-run."""


class SceneDataParser(ColmapDataParser):
    """See :class:`SceneDataParserConfig`."""

    config: SceneDataParserConfig

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        data = self.config.data
        if not data.exists():
            raise SceneDataError(f"data folder {data} does not exist; {EXPECTED_LAYOUT}")
        colmap_dir = self._find_colmap_dir()
        transforms = data if data.suffix == ".json" else data / "transforms.json"
        if colmap_dir is not None:
            self.config.colmap_path = colmap_dir
            images_dir = data / self.config.images_path
            downscaled = list(data.glob(f"{self.config.images_path.name}_*"))  # images_2/, images_4/ ...
            if not images_dir.is_dir() and not downscaled:
                raise SceneDataError(f"{images_dir} not found next to the COLMAP model {data / colmap_dir}")
            try:
                outputs = super()._generate_dataparser_outputs(split, **kwargs)
            except (ValueError, AssertionError) as err:  # nerfstudio's own checks, made one line
                raise SceneDataError(f"{data / colmap_dir}: {err}") from err
        elif transforms.is_file():
            outputs = self._nerfstudio_outputs(split)
        else:
            raise SceneDataError(f"{data} has no COLMAP model (sparse/0) and no transforms.json; {EXPECTED_LAYOUT}")
        if self.config.check_images:
            check_images(outputs.image_filenames)
        if split == "train":
            self._set_initial_points(outputs)
        return outputs

    def _find_colmap_dir(self) -> Path | None:
        data = self.config.data
        if data.is_file():
            return None
        for candidate in (self.config.colmap_path, *COLMAP_FALLBACKS):
            if (data / candidate / "cameras.bin").exists() or (data / candidate / "cameras.txt").exists():
                if candidate != self.config.colmap_path:
                    CONSOLE.log(f"COLMAP model found in {data / candidate}")
                return candidate
        return None

    def _nerfstudio_outputs(self, split: str) -> DataparserOutputs:
        # Only the fields both parsers share are forwarded; nerfstudio-data owns the rest of its options.
        ns_config = NerfstudioDataParserConfig(
            data=self.config.data,
            scale_factor=self.config.scale_factor,
            downscale_factor=self.config.downscale_factor,
            scene_scale=self.config.scene_scale,
            orientation_method=self.config.orientation_method,
            center_method=self.config.center_method,
            auto_scale_poses=self.config.auto_scale_poses,
            eval_mode=self.config.eval_mode,
            train_split_fraction=self.config.train_split_fraction,
            eval_interval=self.config.eval_interval,
            load_3D_points=self.config.init == "sfm",
        )
        try:
            return ns_config.setup().get_dataparser_outputs(split)
        except (ValueError, AssertionError, KeyError) as err:
            raise SceneDataError(f"{self.config.data}: transforms.json could not be read: {err}") from err

    def _set_initial_points(self, outputs: DataparserOutputs) -> None:
        if self.config.init == "sfm":
            if "points3D_xyz" not in outputs.metadata:
                raise SceneDataError(
                    f"{self.config.data}: --init sfm needs SfM points (sparse/0/points3D.bin or a ply_file_path in "
                    "transforms.json); use --init random"
                )
            return
        xyz, rgb = random_points_in_view(
            outputs.cameras, self.config.num_random_points, seed=self.config.init_seed, min_views=self.config.min_views
        )
        outputs.metadata.update(points3D_xyz=xyz, points3D_rgb=rgb)
        CONSOLE.log(f"Initialising from {xyz.shape[0]} random points inside the training cameras' view")


def check_images(paths: List[Path]) -> None:
    """Open each image's header; raise :class:`SceneDataError` naming the first missing or unreadable one.

    Args:
        paths: image files.

    Raises:
        SceneDataError: a file is missing or not an image PIL can identify.
    """
    for path in paths:
        if not Path(path).is_file():
            raise SceneDataError(f"image {path} listed by the scene does not exist; {EXPECTED_LAYOUT}")
        try:
            with Image.open(path) as img:
                img.size  # noqa: B018 - reading the header is the check
        except (UnidentifiedImageError, OSError) as err:
            raise SceneDataError(f"image {path} cannot be read ({type(err).__name__}: {err})") from err
