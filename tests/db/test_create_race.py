"""Nodes starting together on one PostgreSQL create the same Kamailio tables at once: every one
of them gets its tables (the loser of the race tries again instead of failing)."""

from __future__ import annotations

import threading
import uuid

import pytest

from ksr.db import DbError, open_store
from ksr.modules.dialog.kamrows import DIALOG_SPEC, VARS_SPEC
from tests import services

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("round_", range(3))
def test_nodes_creating_one_table_at_once_all_get_it(round_: int) -> None:
    url = f"{services.pg_url()}?prefix=t{uuid.uuid4().hex[:8]}_"
    stores = [open_store(url) for _ in range(4)]
    errors: list[DbError] = []
    start = threading.Barrier(len(stores))

    def node(i: int) -> None:
        start.wait()
        try:
            stores[i].table(DIALOG_SPEC)
            stores[i].table(VARS_SPEC)
        except DbError as err:
            errors.append(err)

    threads = [threading.Thread(target=node, args=(i,)) for i in range(len(stores))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
        assert stores[0].table(DIALOG_SPEC).all() == []
    finally:
        for name in ("dialog", "dialog_vars", "version"):
            stores[0].drop(name)
        for s in stores:
            s.close()
