"""Per-process counters, read by the metrics endpoint and by tests."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable

from ._forking import renew_locks_after_fork


class Stats:
    """Counters of one app (one config prefix) in this process.

    Increments take a lock: a counter that loses updates under threads would
    make hit rates lie.
    """

    def __init__(self) -> None:
        # Told of every count (name, namespace or None, amount): the
        # OpenTelemetry counters, when a meter provider is configured.
        self.mirror: Callable[[str, str | None, int], None] | None = None
        self._lock = threading.Lock()
        renew_locks_after_fork(self, "_lock")
        self.reset()

    def reset(self) -> None:
        """Every counter back to zero (shared metrics keep their totals)."""
        with self._lock:
            self.revocation_checks = 0
            self.revocations = 0
            self.redis_errors = 0
            self.near_cache_hits = 0
            self.near_cache_misses = 0
            self.near_cache_invalidations = 0
            self.near_cache_flushes = 0
            self._cache: defaultdict[str, dict[str, int]] = defaultdict(
                lambda: {"hits": 0, "misses": 0, "errors": 0}
            )

    def count(self, name: str, amount: int = 1) -> None:
        """Add to one of the counters above (``revocation_checks``, ...)."""
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)
        if self.mirror is not None:
            self.mirror(name, None, amount)

    def cache_event(self, namespace: str, kind: str) -> None:
        """Count a cache ``hits``, ``misses`` or ``errors`` in ``namespace``."""
        with self._lock:
            self._cache[namespace][kind] += 1
        if self.mirror is not None:
            self.mirror("cache_" + kind, namespace, 1)

    def cache(self) -> dict[str, dict[str, int]]:
        """A copy of the cache counters: namespace -> hits, misses, errors."""
        with self._lock:
            return {namespace: dict(counts) for namespace, counts in self._cache.items()}
