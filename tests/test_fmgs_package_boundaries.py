"""Neither method's package imports the other's: fmgs builds on splat_core only, vlm-fastgs never loads fmgs.

Each check runs in a fresh interpreter, since this test session has imported both packages already."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _loaded_packages(modules):
    """Top-level project packages in ``sys.modules`` after importing ``modules`` in a fresh interpreter."""
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('vlm_instruct_gs', 'fmgs_field', 'splat_core'))))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "modules, banned, needed",
    [
        (["fmgs_field.fmgs_config", "fmgs_field.fmgs_model", "fmgs_field.fmgs_pipeline"], "vlm_instruct_gs",
         "fmgs_field.fmgs_model"),
        (["vlm_instruct_gs.vlm_fastgs_config"], "fmgs_field", "vlm_instruct_gs.vlm_fastgs_config"),
    ],
)
def test_method_packages_do_not_import_each_other(modules, banned, needed):
    loaded = _loaded_packages(modules)
    assert needed in loaded and "splat_core.model" in loaded  # the import ran, and through the shared core
    assert [m for m in loaded if m.split(".")[0] == banned] == []
