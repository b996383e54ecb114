"""ksr's bundled modules: one folder per module, each defining ``MODULE``.

This folder is the package ``ksr.modules`` (``ksr/modules`` is a symlink to it, and the wheel
installs it there). Importing it under its folder name would load every module a second time
under another name, so that is refused with the fix.
"""

if __name__ != "ksr.modules":
    raise ImportError(
        f"the bundled modules are the package 'ksr.modules'; import them as ksr.modules.<name>, "
        f"not as {__name__!r}"
    )
