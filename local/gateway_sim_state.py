"""The simulator's gateway state on disk, so that a restart of `make run` keeps the gateways' orders,
payments and refunds, as the real gateways keep them: a checkout saved in our database before the
restart names a gateway order the simulator still knows, and can still be paid.

Written as JSON (atomically: a temporary file renamed over the old one) within a second of a change
and when the simulator stops; read once at start. Counters, the call log and webhook deliveries are
measurements of one run and are not kept. A refund still pending when the simulator stopped settles
with the standing outcome (the refund outcome knobs) shortly after the next start.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from local.gateway_sim_cashfree import CashfreeSim
from local.gateway_sim_razorpay import RazorpaySim

VERSION = 1
SAVE_EVERY_S = 1.0


def snapshot(razorpay: RazorpaySim, cashfree: CashfreeSim) -> dict[str, Any]:
    """Everything the gateways would still know after a restart (call with the simulator's lock held)."""
    return {"version": VERSION, "razorpay": razorpay.state(), "cashfree": cashfree.state()}


def restore(razorpay: RazorpaySim, cashfree: CashfreeSim, state: dict[str, Any]) -> bool:
    """Load a snapshot of this version (False, nothing loaded, for another)."""
    if state.get("version") != VERSION:
        return False
    razorpay.load_state(state["razorpay"])
    cashfree.load_state(state["cashfree"])
    return True


class StateFile:
    """Saves the snapshot when it changed, every SAVE_EVERY_S, from a thread of its own."""

    def __init__(self, path: Path, take: Any, lock: threading.RLock) -> None:
        self.path = path
        self._take = take  # () -> snapshot dict
        self._lock = lock
        self._written = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gateway-sim-state", daemon=True)

    def load(self) -> dict[str, Any] | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        self._written = text
        loaded: dict[str, Any] = json.loads(text)
        return loaded

    def start(self) -> None:
        if not self._thread.is_alive():
            self._thread.start()

    def save(self) -> None:
        with self._lock:
            text = json.dumps(self._take(), separators=(",", ":"), sort_keys=True)
        if text == self._written:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, self.path)
        self._written = text

    def stop(self) -> None:
        self._stop.set()
        self.save()

    def _run(self) -> None:
        while not self._stop.wait(SAVE_EVERY_S):
            self.save()
