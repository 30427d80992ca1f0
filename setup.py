"""Build hooks: compile the job shim into every wheel and install (the rest is in pyproject.toml).

A wheel or ``pip``/``pipx install`` without ``ccxd-shim`` gives a daemon whose jobs
die with it, so the shim is compiled whenever the package is built: static with
musl-gcc where there is one, else with the system C compiler.  Without any C
compiler the build fails and says what to install, unless
``CCXD_BUILD_WITHOUT_SHIM=1`` asks for a package without the shim (``ccxctl
doctor`` then reports it missing).  The shim is Linux-only: elsewhere (Homebrew
on macOS) the package is built without it.  The wheel holds a native program, so it is
tagged for the platform: a static shim runs on any Linux of its architecture
(``manylinux2014`` and ``musllinux``), a dynamic one only on systems like the
one that built it (``linux_<arch>``).  See docs/decisions/21-shim-build.md.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
from pathlib import Path
from types import ModuleType

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SHIM_DIR = Path("ccxd", "supervision", "shim")
SOURCE = HERE / SHIM_DIR / "ccxd-shim.c"


def _shim_build() -> ModuleType:
    # Loaded by path: importing the ccxd package would need its dependencies.
    spec = importlib.util.spec_from_file_location("_ccxd_shim_build", HERE / SHIM_DIR / "build.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildPyWithShim(build_py):
    """``build_py`` that also compiles ``ccxd-shim`` into the build (or, editable, into the tree)."""

    def run(self) -> None:
        """Copy the Python files, then compile the shim next to them."""
        super().run()
        if os.environ.get("CCXD_BUILD_WITHOUT_SHIM") == "1":
            print("ccxd-shim: not built (CCXD_BUILD_WITHOUT_SHIM=1)", file=sys.stderr)
            return
        if not sys.platform.startswith("linux"):
            # signalfd, prctl, pidfds: the shim is Linux's; elsewhere jobs end with the daemon.
            print(f"ccxd-shim: not built on {sys.platform} (it needs Linux)", file=sys.stderr)
            return
        shim = _shim_build()
        if self.editable_mode:
            # An editable install runs the tree's own files: build there, once per source change.
            dest = HERE / SHIM_DIR / "ccxd-shim"
            if dest.exists() and shim.built_from(dest) == shim.source_digest(SOURCE):
                return
        else:
            dest = Path(self.build_lib) / SHIM_DIR / "ccxd-shim"
        try:
            how = shim.compile_shim(SOURCE, dest)
        except shim.CompilerMissing as exc:
            sys.exit(f"error: {exc}")
        self.announce(f"ccxd-shim: built {dest} ({how})", level=3)


cmdclass: dict[str, type] = {"build_py": BuildPyWithShim}

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1: the wheel package's
    from wheel.bdist_wheel import bdist_wheel  # type: ignore[no-redef]


class NativeDistribution(Distribution):
    """A distribution with a native program: installed to platlib, its wheel tagged for a platform."""

    def has_ext_modules(self) -> bool:
        """True: the shim is native code, though not a Python extension."""
        return True


class PlatformWheel(bdist_wheel):
    """A ``py3-none-<platform>`` wheel: Python code for any Python 3, a native shim for one platform."""

    def get_tag(self) -> tuple[str, str, str]:
        """``py3``, ``none``, and the platform the shim runs on."""
        _, _, plat = super().get_tag()
        shim = Path(self.bdist_dir) / "ccxd" / "supervision" / "shim" / "ccxd-shim"
        machine = platform.machine()
        if sys.platform.startswith("linux") and shim.exists() and _shim_build().is_static(shim):
            plat = f"manylinux_2_17_{machine}.manylinux2014_{machine}.musllinux_1_1_{machine}"
        return "py3", "none", plat


cmdclass["bdist_wheel"] = PlatformWheel

setup(cmdclass=cmdclass, distclass=NativeDistribution)
