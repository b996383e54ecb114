"""The configuration and RPC documents list every core parameter and core command."""

from __future__ import annotations

from ksr.core.config import DEFAULT_MODULES, Config, CoreParams, KemiParams
from ksr.core.core_rpc import CoreRpc
from modules.jsonrpcs import JsonrpcsParams
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


def test_every_jsonrpcs_parameter_is_documented() -> None:
    text = (DOCS / "modules" / "jsonrpcs.md").read_text()
    assert [k for k in JsonrpcsParams.model_fields if f"`{k}`" not in text] == []


def test_every_core_rpc_command_is_documented() -> None:
    text = (DOCS / "rpc.md").read_text()
    names = [n for attr in dir(CoreRpc) for n in getattr(getattr(CoreRpc, attr), "__ksr_rpc__", [])]
    assert len(names) >= 10
    assert [n for n in names if f"`{n}`" not in text] == []
