"""The Dialog's persisted form."""

from __future__ import annotations

from ksr.core.timers import TimerHandle
from ksr.modules.dialog.model import Dialog


def test_persisted_form_leaves_the_timer_out() -> None:
    dlg = Dialog(1, 2, "c1", "sip:a@x", "sip:b@x", "sip:b@y", "127.0.0.1", 5090, 0.0)
    handle = TimerHandle(30.0, 1, None, (), None, "", None)
    dlg.timer = handle  # never copied nor stored
    d = dlg.to_dict()
    assert "timer" not in d
    assert dlg.timer is handle
    back = Dialog.from_dict(dict(d, timer="x"))
    assert back.timer is None
    assert back == Dialog.from_dict(d)
    assert back.to_dict() == d
