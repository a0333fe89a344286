"""The perception cache: Evidence kept per clip, keyed by the sha256 of the clip's bytes and the perception options.

Bounded (least recently used goes first) and thread-safe; concurrent requests for the same clip wait for one
perception run instead of starting their own. The per-key locks live only while someone holds or waits for them, so
the lock table is as large as the number of keys being computed right now, not the number of keys ever seen.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def cache_key(digest: str, options: dict[str, Any]) -> str:
    """``digest`` plus the options that change perception's result, in a stable order.

    >>> cache_key("ab", {"fps": 10.0, "asr": True})
    'ab|asr=True|fps=10.0'
    """
    return "|".join([digest, *(f"{k}={options[k]}" for k in sorted(options))])


class PerceptionCache(Generic[T]):
    """At most ``max_items`` values; :meth:`get_or_compute` runs ``compute`` once per key even under concurrency."""

    def __init__(self, max_items: int = 64) -> None:
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        self.max_items = max_items
        self._items: OrderedDict[str, T] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[str, tuple[threading.Lock, list[int]]] = {}  # key -> (lock, [holders + waiters])
        self.hits = 0
        self.misses = 0

    @property
    def lock_count(self) -> int:
        """Keys whose lock someone holds or waits for now."""
        with self._lock:
            return len(self._key_locks)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def get(self, key: str) -> T | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            return None

    def put(self, key: str, value: T) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def get_or_compute(self, key: str, compute: Callable[[], T]) -> tuple[T, bool]:
        """The cached value and True, or the computed (and now cached) value and False. Errors are not cached."""
        with self._lock:
            key_lock, users = self._key_locks.setdefault(key, (threading.Lock(), [0]))
            users[0] += 1
        try:
            with key_lock:
                value = self.get(key)
                if value is not None:
                    with self._lock:
                        self.hits += 1
                    return value, True
                value = compute()
                self.put(key, value)
                with self._lock:
                    self.misses += 1
                return value, False
        finally:
            with self._lock:
                users[0] -= 1
                if users[0] == 0:
                    del self._key_locks[key]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
