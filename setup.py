"""Compiles ksr's hot sans-IO modules (``COMPILED`` in ksr/native.py) with mypyc when the
package is built (``pip install``, ``pip install -e``, the wheel), into extension modules beside
their sources and one shared library (``ksr/native__mypyc``). Everything else about the package
is in pyproject.toml.

The install never fails for want of a compiler: without one (or Python's headers), when mypyc
fails, or with ``KSR_PURE_PYTHON=1`` set, it installs pure Python. ``ksr/_native_build.py``,
written here, records which (and why) and the digest of the sources compiled, so ksr runs the
sources once one of them changes (ksr/native.py). docs/build.md.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path
from types import ModuleType

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


def _load_native() -> ModuleType:
    """ksr/native.py without importing the ksr package (its dependencies are not installed
    where pip builds)."""
    spec = importlib.util.spec_from_file_location("_ksr_native", ROOT / "ksr" / "native.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


native = _load_native()

# setuptools runs build_ext, and tags the wheel for the platform, only for a distribution with
# extension modules: this one stands for mypyc's, made when build_ext runs (pip runs setup.py
# three times, for the requirements, the metadata and the build; mypyc is needed by the last).
PLACEHOLDER = Extension(native.GROUP + "__mypyc", sources=[])


def _warn(text: str) -> None:
    print(f"WARNING: ksr installs pure Python: {text}", file=sys.stderr, flush=True)


class BuildNative(build_ext):
    """build_ext with mypyc's extension modules, falling back to pure Python, never failing."""

    extensions: list[Extension]
    pure_reason: str | None = None
    # the digest of the sources as mypyc read them: a source edited while the C compiles
    # must not count as built (the stamp would claim the edit)
    digest: str | None = None

    def finalize_options(self) -> None:
        if self.distribution.ext_modules == [PLACEHOLDER]:
            exts = self._mypycify()
            if exts:
                self.distribution.ext_modules = exts
        super().finalize_options()
        if self.extensions == [PLACEHOLDER]:  # pure Python: nothing to build, the stamp to write
            self.extensions = []

    def _mypycify(self) -> list[Extension]:
        if native.pure_requested(os.environ):
            self.pure_reason = f"{native.ENV}=1 at install"
            return []
        started = time.monotonic()
        self.digest = native.source_digest(ROOT)
        try:
            from mypyc.build import mypycify

            exts: list[Extension] = mypycify(
                [str(p.relative_to(ROOT)) for p in native.source_paths(ROOT)],
                group_name=native.GROUP,
            )
        except (Exception, SystemExit) as err:  # mypyc missing or failing: never the install
            self.pure_reason = f"mypyc failed ({type(err).__name__}: {err})"
            _warn(self.pure_reason)
            return []
        print(f"ksr: mypyc made C in {time.monotonic() - started:.0f} s", file=sys.stderr)
        return exts

    def run(self) -> None:
        started = time.monotonic()
        inplace = bool(self.inplace)  # (setuptools clears it while it builds, and on a failure)
        if inplace:  # an editable install: no extension module of an earlier build stays
            # modules/ too: rglob does not follow the ksr/modules symlink, and a module taken
            # out of COMPILED would otherwise keep importing its old extension
            for top in ("ksr", "modules"):
                for old in (ROOT / top).rglob("*.so"):
                    old.unlink()
        if self.extensions:
            try:
                super().run()
            except Exception as err:  # no C compiler, no Python.h...
                for out in self.get_outputs():
                    Path(out).unlink(missing_ok=True)
                self.pure_reason = f"the C build failed ({type(err).__name__}: {err})"
                _warn(self.pure_reason + "; pip install -v shows the compiler's output")
            else:
                print(f"ksr: compiled in {time.monotonic() - started:.0f} s", file=sys.stderr)
        self._write_stamp(inplace)

    def _write_stamp(self, inplace: bool) -> None:
        """ksr/_native_build.py: in the source tree for an editable install (the extension
        modules are copied there too), else in the build folder the wheel is made from."""
        if inplace:
            folder = ROOT / "ksr"
        else:
            folder = Path(self.build_lib) / "ksr"
        compiled = self.pure_reason is None
        if compiled:
            from mypy.version import __version__ as mypy_version

            detail = f"mypyc {mypy_version}"
        else:
            detail = str(self.pure_reason)[:500]
        text = (
            '"""What the build of ksr did (written by setup.py; docs/build.md)."""\n\n'
            f"COMPILED = {compiled!r}\n"
            f"DETAIL = {detail!r}\n"
            f"DIGEST = {self.digest or native.source_digest(ROOT)!r}\n"
        )
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "_native_build.py").write_text(text)


setup(ext_modules=[PLACEHOLDER], cmdclass={"build_ext": BuildNative})
