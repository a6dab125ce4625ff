"""The dashboard's input thread sleeps while nobody types (tuitrain/driver.py)."""

from __future__ import annotations

import sys

import pytest

from tuitrain.driver import ACTIVE_S, BUSY_S, IDLE_S, input_wait


def test_the_input_thread_waits_long_only_once_nobody_typed_for_a_while():
    assert input_wait(100.0, 100.0) == BUSY_S  # a key just came: an Esc must still time out promptly
    assert input_wait(100.0 + ACTIVE_S - 0.01, 100.0) == BUSY_S
    assert input_wait(100.0 + ACTIVE_S, 100.0) == IDLE_S
    assert IDLE_S <= 1.0 and BUSY_S <= 0.1  # leaving waits at most a second; typing as fast as Textual


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Textual's Linux driver")
def test_the_dashboard_uses_it_on_a_linux_terminal():
    from tests.fakes import FakeBackend
    from tuitrain.app import TuiTrainApp
    from tuitrain.driver import QuietLinuxDriver

    assert issubclass(TuiTrainApp(FakeBackend()).get_driver_class(), QuietLinuxDriver)
