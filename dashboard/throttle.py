"""Sign-in throttling: after a few failed attempts, an account (and, separately, a client address) must wait
before the next try, twice as long after each further failure; a success clears the account's count.

One Throttle per dashboard process (services.throttle()); several dashboard processes each count their own.

    throttle.wait_s(keys, now)   ->  seconds until another attempt is allowed (0: go ahead)
    throttle.failed(keys, now);  throttle.succeeded(keys)
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

FREE_ATTEMPTS = 5  # failures in a row before any waiting
FIRST_WAIT_S = 30.0  # the wait after the last free failure; doubles with each further one
MAX_WAIT_S = 15 * 60.0


class Throttle:
    def __init__(self) -> None:
        self._failures: dict[str, tuple[int, float]] = {}  # key -> (failures in a row, time of the last)
        self._lock = threading.Lock()  # sessions run in threads of one process

    @staticmethod
    def backoff_s(failures: int) -> float:
        """How long to wait after `failures` failures in a row."""
        if failures < FREE_ATTEMPTS:
            return 0.0
        return min(MAX_WAIT_S, FIRST_WAIT_S * 2 ** (failures - FREE_ATTEMPTS))

    def wait_s(self, keys: Iterable[str], now: float) -> float:
        with self._lock:
            waits = [0.0]
            for key in keys:
                failures, last = self._failures.get(key, (0, now))
                waits.append(last + self.backoff_s(failures) - now)
            return max(0.0, *waits)

    def failed(self, keys: Iterable[str], now: float) -> int:
        """Count a failure against every key; returns the most failures in a row of any of them."""
        with self._lock:
            counts = []
            for key in keys:
                failures = self._failures.get(key, (0, now))[0] + 1
                self._failures[key] = (failures, now)
                counts.append(failures)
            return max(counts, default=0)

    def succeeded(self, keys: Iterable[str]) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)
