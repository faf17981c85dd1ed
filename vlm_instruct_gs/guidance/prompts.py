"""Loading the per-phase VLM prompts from editable text files.

The defaults live in ``configs/prompts/{detail,subject,artifacts}.txt`` at the repository root (next to the package
in an editable install). Lines whose first non-blank character is ``#`` are comments and are not sent to the model.
Files are read on every call, so a prompt edited during training takes effect at the next query.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from vlm_instruct_gs.guidance.phases import PHASES, check_phase

PathLike = Union[str, Path]


def default_prompt_dir() -> Path:
    """``<repository root>/configs/prompts`` (resolved from this file's location; may not exist in a wheel)."""
    return Path(__file__).resolve().parents[2] / "configs" / "prompts"


def prompt_path(phase: str, prompt_dir: Optional[PathLike] = None) -> Path:
    """Path of the prompt file for ``phase`` (``<prompt_dir>/<phase>.txt``). Raises ValueError for unknown phases."""
    return Path(prompt_dir if prompt_dir is not None else default_prompt_dir()) / f"{check_phase(phase)}.txt"


def read_prompt_file(path: PathLike) -> str:
    """Text of a prompt file without comment lines, stripped.

    Raises:
        FileNotFoundError: the file does not exist (the message names it).
        ValueError: nothing but comments or blank lines is left.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"prompt file not found: {path}")
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if not ln.lstrip().startswith("#")]
    text = "\n".join(lines).strip()
    if not text:
        raise ValueError(f"prompt file {path} is empty (only comments or blank lines)")
    return text


def load_prompt(phase: str, prompt_file: Optional[PathLike] = None, prompt_dir: Optional[PathLike] = None) -> str:
    """Prompt text for ``phase``.

    Args:
        phase (str): one of ``detail``, ``subject``, ``artifacts``.
        prompt_file: explicit file; wins over ``prompt_dir``. Default is None.
        prompt_dir: folder holding ``<phase>.txt`` files. Default is None (:func:`default_prompt_dir`).

    Returns:
        str: the prompt, comment lines removed.

    Raises:
        ValueError: unknown phase or empty file.
        FileNotFoundError: the prompt file is missing.
    """
    check_phase(phase)
    return read_prompt_file(prompt_file if prompt_file is not None else prompt_path(phase, prompt_dir))


__all__ = ["PHASES", "default_prompt_dir", "load_prompt", "prompt_path", "read_prompt_file"]
