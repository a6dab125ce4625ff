"""Textual's Linux driver with an input thread that sleeps while nobody types.

Textual's input thread waits for keys with ``select(0.1)``: ten wake-ups a second for as long as
the dashboard runs, each taking the GIL and a core for a moment. On a machine whose cores the
torch threads keep busy, every wake-up of any thread stalls a parallel region of training (the
torch worker on that core is preempted and its partner waits at the region's end). This driver
waits ``IDLE_S`` when nothing happened for ``ACTIVE_S`` and ``BUSY_S`` (Textual's 0.1 s) otherwise,
so a lone Esc (the parser's timeout turns it into a key) and leaving (a key, a signal's wake) are
as prompt as before. Leaving without a key (a signal) can take up to IDLE_S longer: Textual joins
the input thread. Only the wait differs: reading and parsing are Textual's own.
"""

from __future__ import annotations

import os
import selectors
import time
from codecs import getincrementaldecoder

from textual.drivers.linux_driver import LinuxDriver

BUSY_S = 0.1
"""The wait while keys come (Textual's own): the escape-sequence timeout is checked this often."""
IDLE_S = 1.0
"""The wait once nobody typed for ACTIVE_S: a wake-up a second instead of ten."""
ACTIVE_S = 2.0


def input_wait(now: float, last_input: float) -> float:
    """How long the input thread waits for the next key (pure: the tests' subject)."""
    return BUSY_S if now - last_input < ACTIVE_S else IDLE_S


class QuietLinuxDriver(LinuxDriver):
    """LinuxDriver whose input thread wakes once a second while idle (see the module's doc)."""

    def run_input_thread(self) -> None:
        """Wait for input and dispatch events (LinuxDriver.run_input_thread, the wait adapted)."""
        from textual._xterm_parser import XTermParser  # the parser LinuxDriver itself uses

        selector = selectors.SelectSelector()
        selector.register(self.fileno, selectors.EVENT_READ)
        parser = XTermParser(self._debug)
        decode = getincrementaldecoder("utf-8")().decode
        last_input = time.monotonic()

        def process(events: list, final: bool = False) -> bool:
            """Feed what was read to the parser; True when there was input."""
            got = False
            for i, (_key, mask) in enumerate(events):
                if mask & selectors.EVENT_READ:
                    data = decode(os.read(self.fileno, 1024 * 4), final=final and i == len(events) - 1)
                    if not data:  # stdin piped and at its end
                        break
                    got = True
                    for event in parser.feed(data):
                        self.process_message(event)
            for event in parser.tick():
                self.process_message(event)
            return got

        try:
            while not self.exit_event.is_set():
                if process(selector.select(input_wait(time.monotonic(), last_input))):
                    last_input = time.monotonic()
            selector.unregister(self.fileno)
            process(selector.select(BUSY_S), final=True)
        finally:
            selector.close()
            try:
                for _event in parser.feed(""):
                    pass
            except Exception:  # EOFError, textual's ParseError: the parser is done either way
                pass
