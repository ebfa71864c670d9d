"""A bounded, thread-safe memo: one per model, for tables derived from it (candidates, anchors, statistics).

One cached model serves every app session at once, so derived tables must be built once under a lock and must
not grow without bound. Values are computed outside the global lock (a per-key lock makes concurrent callers of
the same key wait for the first one), and the least recently used entries beyond `max_entries` are dropped.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class Memo:
    def __init__(self, max_entries: int = 64):
        self.max_entries = max_entries
        self._values: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """The value for `key`, computing it once; concurrent callers of one key wait for the first."""
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._values:
                    self._values.move_to_end(key)
                    return self._values[key]
            value = compute()
            with self._lock:
                self._values[key] = value
                self._values.move_to_end(key)
                while len(self._values) > self.max_entries:
                    self._values.popitem(last=False)
                self._key_locks.pop(key, None)
            return value

    def peek(self, key: Hashable, default=None):
        with self._lock:
            return self._values.get(key, default)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._values

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
