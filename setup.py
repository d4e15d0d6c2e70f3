"""Build hook: the discovery pages travel inside wheels and sdists (docs/operating.md).

``computalot.discovery.site`` serves the Markdown of the repository's ``docs/``. An installed
wheel has no repository around it, so building one copies ``docs/`` into the package as
``computalot/discovery/pages/`` (the sdist carries ``docs/`` through ``MANIFEST.in``). An
editable install skips the copy: it reads the checkout's ``docs/`` and keeps the plain path
``.pth`` that ``pyproject.toml`` asks for.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

DOCS = Path(__file__).resolve().parent / "docs"
PAGES = Path("computalot", "discovery", "pages")


class BuildWithPages(build_py):
    """``build_py`` that also places ``docs/`` at :data:`PAGES` in the build (not the source)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        if not DOCS.is_dir():
            raise SystemExit(f"{DOCS} is missing: the discovery pages cannot be packaged")
        target = Path(self.build_lib) / PAGES
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(DOCS, target, ignore=shutil.ignore_patterns(".*", "__pycache__"))


setup(cmdclass={"build_py": BuildWithPages})
