"""Run the code of a built-in blueprint: write its files into a scratch project, import its tests.

A guide's Python blocks name their files (```` ```python title="plugins/x.py" ````).
:func:`guide_module` writes every file of a guide into a fresh folder (a
project root, removed at exit) and imports one of them, so a test module can
re-export the guide's own test classes and pytest runs them as they are.
"""

from __future__ import annotations

import atexit
import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from flue.blueprints import builtin_blueprints, files


def blueprint(slug: str):
    for bp in builtin_blueprints():
        if bp.slug == slug:
            return bp
    raise KeyError(slug)


def materialize(slug: str, root: Path | None = None) -> Path:
    """Write the guide's files under ``root`` (default: a new temporary folder) and return it."""
    if root is None:
        root = Path(tempfile.mkdtemp(prefix=f"flue-guide-{slug.replace('/', '-')}-"))
        atexit.register(shutil.rmtree, root, True)
    for rel, text in files(blueprint(slug)).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def guide_module(slug: str, rel: str) -> ModuleType:
    """Import ``rel`` (e.g. ``tests/test_x.py``) from a materialized copy of the guide."""
    root = materialize(slug)
    name = f"flue_guide_{slug.replace('/', '_').replace('-', '_')}_{Path(rel).stem}"
    spec = importlib.util.spec_from_file_location(name, root / rel)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
