"""Module parameters as Kamailio users write them: yes/no/on/off for integer flags, one string
where Kamailio lets a parameter repeat, and a start-up warning naming every Kamailio parameter
that ksr accepts but ignores (with a check that the table of those matches the code)."""

from __future__ import annotations

import importlib
import logging
import re
from pathlib import Path

import pytest

from ksr.core.config import load_config
from ksr.core.ignored_params import IGNORED
from ksr.core.module import FLAG_WORDS
from ksr.core.modules import BUNDLED
from ksr.core.server import Server

REPO = Path(__file__).resolve().parents[2]


def _server(tmp_path: Path, text: str) -> Server:
    cfg = tmp_path / "ksr.toml"
    cfg.write_text(text)
    return Server(load_config(cfg), None)


@pytest.mark.parametrize(("word", "value"), sorted(FLAG_WORDS.items()))
def test_integer_flags_accept_kamailio_words(tmp_path: Path, word: str, value: int) -> None:
    s = _server(
        tmp_path,
        f'loadmodule = ["sl", "auth", "auth_db"]\n[modparam.auth_db]\ncalculate_ha1 = "{word}"\n'
        'db_url = "sqlite://:memory:"\n',
    )
    assert s.module("auth_db").params.calculate_ha1 == value


def test_other_words_are_still_errors(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="calculate_ha1"):
        _server(
            tmp_path,
            'loadmodule = ["sl", "auth", "auth_db"]\n[modparam.auth_db]\ncalculate_ha1 = "maybe"\n',
        )


def test_repeatable_parameter_takes_one_string_or_a_list(tmp_path: Path) -> None:
    one = _server(
        tmp_path,
        'loadmodule = ["sl", "htable"]\n[modparam.htable]\nhtable = "ipban=>size=8;autoexpire=300;"\n',
    )
    assert one.module("htable").params.htable == ["ipban=>size=8;autoexpire=300;"]
    two = _server(
        tmp_path,
        'loadmodule = ["sl", "htable"]\n[modparam.htable]\nhtable = ["a=>size=4;", "b=>size=4;"]\n',
    )
    assert two.module("htable").params.htable == ["a=>size=4;", "b=>size=4;"]


def test_ignored_parameter_is_named_at_start_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="ksr.config"):
        _server(
            tmp_path,
            'loadmodule = ["sl", "tm", "rr"]\n[modparam.tm]\nfailure_reply_mode = 1\n'
            "fr_timer = 30000\n[modparam.rr]\nenable_full_lr = 1\nadd_username = 1\nignore_user = 1\n",
        )
    text = caplog.text
    assert "[modparam.tm] failure_reply_mode is accepted for Kamailio configurations" in text
    assert "[modparam.rr] add_username" in text
    assert "fr_timer" not in text  # these two work
    assert "enable_full_lr" not in text
    assert "ignore_user" not in text  # set to the value ksr behaves as anyway


def _read_anywhere(name: str, sources: str) -> bool:
    """Read as an attribute (``p.name``, ``params.name``) or by name (``"name"``)."""
    return (
        re.search(r"\.\s*" + re.escape(name) + r"\b|[\"']" + re.escape(name) + "[\"']", sources)
        is not None
    )


def test_ignored_table_matches_the_code() -> None:
    """Every listed parameter exists and nothing reads it; every parameter nothing reads is
    listed (so a new no-op parameter cannot slip in without its warning)."""
    # a module reads its own parameters; the script engines (ksr/kemi) read app_*'s, the
    # transports tls's
    engines = "".join(
        p.read_text() for d in ("kemi", "transport") for p in (REPO / "ksr" / d).rglob("*.py")
    )
    problems = []
    for folder in sorted(BUNDLED.iterdir()):
        if not (folder / "__init__.py").is_file():
            continue
        cls = getattr(importlib.import_module(f"ksr.modules.{folder.name}"), "MODULE", None)
        if cls is None:
            continue
        src = engines + "".join(p.read_text() for p in folder.rglob("*.py"))
        listed = IGNORED.get(folder.name, {})
        for name in cls.Params.model_fields:
            used = _read_anywhere(name, src)
            if used and name in listed:
                problems.append(f"{folder.name}.{name} is read by the code but listed as ignored")
            if not used and name not in listed:
                problems.append(f"{folder.name}.{name} is read nowhere: list it in IGNORED")
        for name in listed:
            if name not in cls.Params.model_fields:
                problems.append(f"{folder.name}.{name} is listed but is no parameter")
    assert problems == []
