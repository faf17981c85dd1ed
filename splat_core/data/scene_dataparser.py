"""Scene dataparser: the 3DGS COLMAP layout with no flags, nerfstudio ``transforms.json`` folders, clear errors.

nerfstudio's ``colmap`` dataparser looks for ``colmap/sparse/0``; the 3DGS layout this project uses (and most public
captures ship) is ``images/`` + ``sparse/0/``. :class:`SceneDataParserConfig` subclasses nerfstudio's
``ColmapDataParserConfig``, so tyro maps it onto the ``colmap`` subcommand and ``ns-train vlm-fastgs --data scene
colmap --downscale-factor 4`` keeps every colmap flag while finding ``sparse/0``. A folder with ``transforms.json``
(and no COLMAP model) is handed to nerfstudio's own ``NerfstudioDataParser``.

It also owns the initial point cloud (``init``): SfM points or ``num_random_points`` random points where the
training cameras look (:func:`~splat_core.data.init_points.random_points_in_view`), handed to the model as
``points3D_xyz``/``points3D_rgb`` so any Gaussian method (splatfacto too) starts from the same points.

Bad input is one ``error:`` line naming the file or folder (:class:`SceneDataError`), never a traceback: a missing,
truncated or undecodable image, an image whose size differs from its camera's, a truncated or corrupt COLMAP file,
a downscale factor below 1, a missing ``images_<factor>/`` folder (nerfstudio asks on stdin and, answered yes,
needs ffmpeg; here a run without a terminal gets one line listing the folders that exist, and a terminal gets the
question, then a complete PIL-downscaled folder or none), a ``transforms.json`` frame without ``file_path`` /
``transform_matrix``, or fewer than two frames.
"""

from __future__ import annotations

import json
import math
import shutil
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Literal, Optional, Sequence, Tuple, Type

from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
from nerfstudio.data.dataparsers.colmap_dataparser import ColmapDataParser, ColmapDataParserConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import MAX_AUTO_RESOLUTION, NerfstudioDataParserConfig
from nerfstudio.data.utils import colmap_parsing_utils as colmap_utils
from nerfstudio.utils.rich_utils import CONSOLE
from PIL import Image, UnidentifiedImageError
from rich.prompt import Confirm

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
    random_far_share: float = 0.0
    """Share of the random initial points drawn beyond the subject (1.5 to random_far_depth x the cameras' distance
    to the point they look at), for the background (:func:`~splat_core.data.init_points.random_points_in_view`)."""
    random_far_depth: float = 4.0
    """Farthest depth of those points, in multiples of that distance."""
    check_images: bool = True
    """Decode every image at start-up and compare its size with its camera's, so a missing, truncated or mis-sized
    file is one clear error naming it instead of a crash while caching."""


class SceneDataParser(ColmapDataParser):
    """See :class:`SceneDataParserConfig`."""

    config: SceneDataParserConfig

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        data = self.config.data
        if not data.exists():
            raise SceneDataError(f"data folder {data} does not exist; {EXPECTED_LAYOUT}")
        factor = self.config.downscale_factor
        if factor is not None and factor < 1:
            raise SceneDataError(f"--downscale-factor must be a whole number >= 1 (1 is full size), got {factor}")
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
            except (struct.error, UnicodeDecodeError, MemoryError, EOFError, OverflowError, KeyError, IndexError) as err:
                # what colmap_utils raise on bad bytes (a random count, model id or name); name the file
                bad = corrupt_colmap_file(data / colmap_dir)
                if bad is None and isinstance(err, (KeyError, IndexError)):
                    raise
                bad = bad or data / colmap_dir
                why = "struct.error" if isinstance(err, struct.error) else type(err).__name__
                raise SceneDataError(f"{bad} is truncated or corrupt ({why}: {err}); export the "
                                     "COLMAP model again") from None
            except (ValueError, AssertionError) as err:  # nerfstudio's own checks, made one line
                raise SceneDataError(f"{data / colmap_dir}: {err}") from err
        elif transforms.is_file():
            outputs = self._nerfstudio_outputs(split)
        else:
            raise SceneDataError(f"{data} has no COLMAP model (sparse/0) and no transforms.json; {EXPECTED_LAYOUT}")
        if self.config.check_images:
            sizes = [(int(w), int(h)) for w, h in zip(outputs.cameras.width.view(-1), outputs.cameras.height.view(-1))]
            check_images(outputs.image_filenames, sizes)
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

    def _setup_downscale_factor(self, image_filenames: List[Path], mask_filenames: List[Path],
                                depth_filenames: List[Path]):
        """nerfstudio's (it maps file names to ``images_<factor>/``), after settling the factor here: nerfstudio's
        own asks on stdin (``EOFError`` without one) and downscales with ffmpeg into the user's folder."""
        if self._downscale_factor is None:
            factor = self.config.downscale_factor
            if factor is None:  # nerfstudio's automatic choice: the largest side at most MAX_AUTO_RESOLUTION
                with Image.open(image_filenames[0]) as img:
                    factor = 2 ** max(0, math.ceil(math.log2(max(img.size) / MAX_AUTO_RESOLUTION)))
                CONSOLE.log(f"Using image downscale factor of {factor}")
            if factor > 1:
                for files, folder in ((image_filenames, self.config.images_path), (mask_filenames,
                                      self.config.masks_path), (depth_filenames, self.config.depths_path)):
                    if files and folder is not None:
                        self._ensure_downscaled(files, self.config.data / folder, factor, offer=files is image_filenames)
            self._downscale_factor = factor
        return super()._setup_downscale_factor(image_filenames, mask_filenames, depth_filenames)

    def _ensure_downscaled(self, files: Sequence[Path], source: Path, factor: int, offer: bool) -> None:
        """Check that ``<source>_<factor>/`` holds every file; else ask (terminal only) and make it, or raise.

        Raises:
            SceneDataError: the folder is missing (no terminal, or the offer declined) or incomplete.
        """
        target = source.with_name(f"{source.name}_{factor}")
        missing = [f for f in files if not (target / Path(f).relative_to(source)).is_file()]
        if not missing:
            return
        if target.exists():
            raise SceneDataError(f"{target} lacks {len(missing)} of the {len(files)} files (first: "
                                 f"{Path(missing[0]).name}); delete or complete it, or choose another --downscale-factor")
        found = sorted(p.name + "/" for p in source.parent.glob(f"{source.name}*") if p.is_dir())
        hint = (f"no {target.name}/ for --downscale-factor {factor} in {source.parent} (it has {', '.join(found)}); "
                "use the factor of a folder that exists")
        if not offer or not stdin_is_terminal():
            raise SceneDataError(hint + ", or run ns-train from a terminal to have it made")
        if not Confirm.ask(f"Create {target} ({len(files)} images downscaled {factor}x with PIL)?", default=False,
                           console=CONSOLE):
            raise SceneDataError(hint)
        write_downscaled(files, source, target, factor, self.config.downscale_rounding_mode)

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
        check_transforms(self.config.data if self.config.data.suffix == ".json" else self.config.data / "transforms.json")
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
        try:
            xyz, rgb = random_points_in_view(
                outputs.cameras, self.config.num_random_points, seed=self.config.init_seed,
                min_views=self.config.min_views, far_share=self.config.random_far_share,
                far_depth=self.config.random_far_depth,
            )
        except ValueError as err:  # out-of-range init settings (e.g. --random-far-share 1.5): one line, no traceback
            raise SceneDataError(f"{self.config.data}: random initial points: {err}") from None
        outputs.metadata.update(points3D_xyz=xyz, points3D_rgb=rgb)
        CONSOLE.log(f"Initialising from {xyz.shape[0]} random points inside the training cameras' view")


def check_images(paths: List[Path], sizes: Optional[Sequence[Tuple[int, int]]] = None) -> None:
    """Decode each image; raise :class:`SceneDataError` naming the first missing, unreadable or mis-sized one.

    Args:
        paths: image files.
        sizes: the (width, height) in pixels each image must have (its camera's), or None to skip the size check.

    Raises:
        SceneDataError: a file is missing, is not an image PIL can decode (truncated included), or has another size.
    """
    for i, path in enumerate(paths):
        if not Path(path).is_file():
            raise SceneDataError(f"image {path} listed by the scene does not exist; {EXPECTED_LAYOUT}")
        try:
            with Image.open(path) as img:
                img.load()  # a header can be intact in a truncated file: decode it all
                size = img.size
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            raise SceneDataError(f"image {path} cannot be read ({type(err).__name__}: {err})") from None
        if sizes is not None and tuple(size) != tuple(sizes[i]):
            raise SceneDataError(f"image {path} is {size[0]}x{size[1]} pixels but its camera is "
                                 f"{sizes[i][0]}x{sizes[i][1]}; every image must have its camera's size")


def check_transforms(path: Path) -> None:
    """Check what nerfstudio's parser would otherwise fail on with a bare ``KeyError`` or ``ZeroDivisionError``.

    Raises:
        SceneDataError: the file is not JSON, has no ``frames`` list, fewer than two frames (poses cannot be
            normalised from one), or a frame without ``file_path`` / a 4x4 (or 3x4) ``transform_matrix``.
    """
    try:
        meta = json.loads(Path(path).read_text(encoding="utf8"))
    except (OSError, ValueError) as err:
        raise SceneDataError(f"{path} could not be read: {err}") from None
    frames = meta.get("frames") if isinstance(meta, dict) else None
    if not isinstance(frames, list):
        raise SceneDataError(f"{path} has no 'frames' list")
    if len(frames) < 2:
        raise SceneDataError(f"{path} has {len(frames)} frame(s); at least 2 camera poses are needed")
    for i, frame in enumerate(frames):
        name = f"frame {i}" + (f" ({frame['file_path']})" if isinstance(frame, dict) and "file_path" in frame else "")
        if not isinstance(frame, dict) or "file_path" not in frame:
            raise SceneDataError(f"{path}: {name} has no 'file_path'")
        matrix = frame.get("transform_matrix")
        if matrix is None:
            raise SceneDataError(f"{path}: {name} has no 'transform_matrix' (its 4x4 camera-to-world pose)")
        if not (isinstance(matrix, list) and len(matrix) in (3, 4)
                and all(isinstance(row, list) and len(row) == 4 for row in matrix)):
            raise SceneDataError(f"{path}: {name} has a 'transform_matrix' that is not 4x4")


def corrupt_colmap_file(model_dir: Path) -> Optional[Path]:
    """The first of ``model_dir``'s cameras / images / points3D files (.bin or .txt) that COLMAP's readers reject."""
    readers = (
        ("cameras", colmap_utils.read_cameras_binary, colmap_utils.read_cameras_text),
        ("images", colmap_utils.read_images_binary, colmap_utils.read_images_text),
        ("points3D", colmap_utils.read_points3D_binary, colmap_utils.read_points3D_text),
    )
    for name, read_bin, read_txt in readers:
        for path, read in ((model_dir / f"{name}.bin", read_bin), (model_dir / f"{name}.txt", read_txt)):
            if path.exists():
                try:
                    read(path)
                except Exception:  # whatever the bytes make the reader raise, this is the file
                    return path
                break
    return None


def stdin_is_terminal() -> bool:
    """Whether a person can answer a question on stdin (not a pipe, a file, /dev/null or a closed stream)."""
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):  # closed or replaced stdin
        return False


def write_downscaled(files: Sequence[Path], source: Path, target: Path, factor: int,
                     rounding: Literal["floor", "round", "ceil"] = "floor") -> None:
    """Write every file of ``source`` downscaled ``factor`` x (PIL, bicubic) into ``target``, all or nothing.

    Images go to a hidden sibling folder first, renamed to ``target`` once all are written, so an error or Ctrl-C
    never leaves a partial ``target`` in the user's scene. Sizes round like nerfstudio's cameras
    (``downscale_rounding_mode``).

    Raises:
        SceneDataError: a file could not be read or written (the partial folder is removed).
    """
    rounder = {"floor": math.floor, "round": round, "ceil": math.ceil}[rounding]
    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        for i, file in enumerate(files):
            out = partial / Path(file).relative_to(source)
            out.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(file) as img:
                size = (int(rounder(img.width / factor)), int(rounder(img.height / factor)))
                img.resize(size, Image.Resampling.BICUBIC).save(out)
        partial.rename(target)
    except (OSError, ValueError) as err:
        raise SceneDataError(f"could not write {target} ({type(err).__name__}: {err}); nothing was left in the "
                             "scene folder") from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    CONSOLE.log(f"Wrote {len(files)} images downscaled {factor}x to {target}")
