"""The documents keep up with the code: every core and module parameter and core command is
documented, every document is in docs/README.md, and relative links lead somewhere."""

from __future__ import annotations

import re

import pytest

from ksr.core.config import DEFAULT_MODULES, Config, CoreParams, KemiParams
from ksr.core.core_rpc import CoreRpc
from ksr.core.modules import available_modules, load_module_class
from ksr.core.stats_rpc import StatsRpc
from tests.support import REPO

DOCS = REPO / "docs"


def test_every_config_key_is_documented() -> None:
    text = (DOCS / "configuration.md").read_text()
    keys = [*Config.model_fields, *CoreParams.model_fields, *KemiParams.model_fields]
    missing = [k for k in keys if k != "source" and f"`{k}`" not in text]
    assert missing == [], f"add these to docs/configuration.md: {missing}"


def test_default_modules_are_listed() -> None:
    text = (DOCS / "configuration.md").read_text()
    section = text.split("`DEFAULT_MODULES`, loaded when", 1)[1].split("\n\n", 1)[0]
    assert [m for m in DEFAULT_MODULES if f"`{m}`" not in section] == [], (
        "update DEFAULT_MODULES in docs/configuration.md"
    )


@pytest.mark.parametrize("name", available_modules([]))
def test_every_module_parameter_is_documented(name: str) -> None:
    doc = DOCS / "modules" / f"{name}.md"
    assert doc.is_file(), f"write docs/modules/{name}.md"
    module = load_module_class(name, [])
    assert module is not None
    text = doc.read_text()
    missing = [k for k in module.Params.model_fields if f"`{k}`" not in text]
    assert missing == [], f"add these to docs/modules/{name}.md: {missing}"


def test_every_doc_is_in_the_index() -> None:
    index = (DOCS / "README.md").read_text()
    docs = [p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md") if p.name != "README.md"]
    docs = [d for d in docs if not d.startswith("api/") or d == "api/index.md"]  # generated
    assert [d for d in docs if f"({d})" not in index] == [], "list these in docs/README.md"


@pytest.mark.parametrize(
    "page", ["README.md", *(p.relative_to(REPO).as_posix() for p in DOCS.rglob("*.md"))]
)
def test_relative_links_resolve(page: str) -> None:
    path = REPO / page
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text())
    local = [t for t in targets if "://" not in t and not t.startswith("mailto:")]
    assert [t for t in local if not (path.parent / t).exists()] == []


def test_every_core_rpc_command_is_documented() -> None:
    text = (DOCS / "rpc.md").read_text()
    names = [n for attr in dir(CoreRpc) for n in getattr(getattr(CoreRpc, attr), "__ksr_rpc__", [])]
    names += StatsRpc.COMMANDS
    assert len(names) >= 10
    assert [n for n in names if f"`{n}`" not in text] == []
