"""The layer picture of docs/architecture.md, checked on the source: which package may import
which, and who may touch whose private names.

Rules:
1. ``ksr/sip`` is sans-IO: it imports the standard library and ``ksr.sip`` only (no trio, no
   other ksr layer).
2. ``ksr/transport`` never imports the script engines (``ksr.kemi``) or modules.
3. The core layers (``ksr/sip``, ``ksr/transport``, ``ksr/core``, ``ksr/kemi``, ``ksr/db``) never
   import a module; the module loader imports them by name.
4. A module uses another module only through its public face: the package itself
   (``ksr.modules.usrloc``) or its ``api`` file (``ksr.modules.tm.api``), never its other files.
5. ``x._name`` is only written on ``self``/``cls``: another object's private names are its own.

``KNOWN`` lists the places that break rules 4 and 5 today, each to be removed by giving the
owner a public (typed) way; the list may only shrink: a fixed place must leave it too.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STDLIB = sys.stdlib_module_names
CORE_LAYERS = ("ksr/sip/", "ksr/transport/", "ksr/core/", "ksr/kemi/", "ksr/db/")

KNOWN_IMPORTS: set[tuple[str, str]] = set()
KNOWN_PRIVATE: set[tuple[str, str]] = set()


def sources() -> Iterator[tuple[str, ast.Module]]:
    files = [*REPO.glob("ksr/**/*.py"), *REPO.glob("modules/**/*.py")]
    for path in sorted(files):
        rel = path.relative_to(REPO).as_posix()
        if rel.startswith("ksr/modules/"):  # the same files as modules/, reached by a link
            continue
        yield rel, ast.parse(path.read_text(), rel)


def imports(tree: ast.Module) -> Iterator[str]:
    """Absolute names imported (relative imports stay inside their package, so they are
    left out)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def private_uses(tree: ast.Module) -> Iterator[str]:
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or name.startswith("__"):
            continue
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            continue
        yield ast.unparse(node)


SOURCES = list(sources())


def test_sip_layer_is_sans_io() -> None:
    bad = [
        (rel, name)
        for rel, tree in SOURCES
        if rel.startswith("ksr/sip/")
        for name in imports(tree)
        if name.split(".")[0] not in STDLIB and not name.startswith("ksr.sip")
    ]
    assert bad == [], "ksr/sip imports only the standard library and ksr.sip"


def test_transport_does_not_import_engines_or_modules() -> None:
    bad = [
        (rel, name)
        for rel, tree in SOURCES
        if rel.startswith("ksr/transport/")
        for name in imports(tree)
        if name.startswith(("ksr.kemi", "ksr.modules"))
    ]
    assert bad == []


def test_core_layers_never_import_a_module() -> None:
    bad = [
        (rel, name)
        for rel, tree in SOURCES
        if rel.startswith(CORE_LAYERS)
        for name in imports(tree)
        if name.startswith("ksr.modules")
    ]
    assert bad == []


def _foreign_private_imports() -> set[tuple[str, str]]:
    found = set()
    for rel, tree in SOURCES:
        if not rel.startswith("modules/"):
            continue
        own = rel.split("/")[1]
        for name in imports(tree):
            parts = name.split(".")
            if parts[:2] != ["ksr", "modules"] or len(parts) < 4 or parts[2] == own:
                continue
            if parts[3] != "api":
                found.add((rel, name))
    return found


def test_modules_use_each_other_through_their_public_face() -> None:
    found = _foreign_private_imports()
    assert found - KNOWN_IMPORTS == set(), "import the package or its api file instead"
    assert KNOWN_IMPORTS - found == set(), "fixed: remove these from KNOWN_IMPORTS"


def test_private_names_stay_with_their_owner() -> None:
    found = {(rel, use) for rel, tree in SOURCES for use in private_uses(tree)}
    assert found - KNOWN_PRIVATE == set(), "give the owner a public way instead"
    assert KNOWN_PRIVATE - found == set(), "fixed: remove these from KNOWN_PRIVATE"


def _owner(rel: str) -> str:
    """Who owns a file's ``extra`` keys: its module (``modules/tm``) or its layer (``ksr/core``)."""
    return "/".join(rel.split("/")[:2])


def _constants(tree: ast.Module) -> dict[str, str]:
    """Module-level ``NAME = "text"`` of a file (keys are often named constants)."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name) and isinstance(node.value.value, str):
                    out[target.id] = node.value.value
    return out


def extra_keys(tree: ast.Module) -> Iterator[str]:
    """String keys used on an ``.extra`` dict: ``x.extra["k"]``, ``x.extra.get("k")`` (and
    pop/setdefault), ``"k" in x.extra``."""
    names = _constants(tree)

    def key(node: ast.expr) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            return names.get(node.id)
        return None

    def is_extra(node: ast.expr) -> bool:
        return isinstance(node, ast.Attribute) and node.attr == "extra"

    for node in ast.walk(tree):
        found = None
        if isinstance(node, ast.Subscript) and is_extra(node.value):
            found = key(node.slice)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("get", "pop", "setdefault")
            and is_extra(node.func.value)
            and node.args
        ):
            found = key(node.args[0])
        elif isinstance(node, ast.Compare) and any(is_extra(c) for c in node.comparators):
            found = key(node.left)
        if found is not None:
            yield found


def test_extra_keys_stay_with_their_owner() -> None:
    """A string key of ``ctx.extra`` (or ``tx.extra``...) is used by one module or layer only:
    what crosses goes through a typed field or the owner's API."""
    owners: dict[str, set[str]] = {}
    for rel, tree in SOURCES:
        for k in extra_keys(tree):
            owners.setdefault(k, set()).add(_owner(rel))
    shared = {k: sorted(o) for k, o in owners.items() if len(o) > 1}
    assert shared == {}


def test_the_checks_can_fail() -> None:
    tree = ast.parse("import trio\nfrom ksr.modules.usrloc.contact import Contact\nx._y\n")
    assert list(imports(tree)) == ["trio", "ksr.modules.usrloc.contact"]
    assert list(private_uses(tree)) == ["x._y"]
    tree = ast.parse('K = "b"\nctx.extra["a"]\ntx.extra.get(K)\n"c" in ctx.extra\n')
    assert sorted(extra_keys(tree)) == ["a", "b", "c"]
