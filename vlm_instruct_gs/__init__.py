"""vlm-fastgs: VLM-guided FastGS splatting as a nerfstudio method, on the shared core :mod:`splat_core`.

Importing the package loads no guidance code. It also keeps ``config.yml`` files written before the shared core was
split out loadable: they name ``vlm_instruct_gs.data.*`` and ``vlm_instruct_gs.strategy.*`` classes, which now live in
:mod:`splat_core`; :class:`_MovedModules` resolves those old module names to the new modules.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

_MOVED = {
    f"vlm_instruct_gs.{name}": f"splat_core.{name}" for name in ("data", "strategy", "rendering", "compat", "metrics")
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Import hook: an old module name (``vlm_instruct_gs.strategy.fastgs``) imports its new module under that name."""

    @staticmethod
    def _target(name: str):
        for old, new in _MOVED.items():
            if name == old or name.startswith(old + "."):
                return new + name[len(old):]
        return None

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if self._target(name) else None

    def create_module(self, spec):
        return importlib.import_module(self._target(spec.name))

    def exec_module(self, module) -> None:
        pass


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.insert(0, _MovedModules())  # before PathFinder, which would load the files again under old names
