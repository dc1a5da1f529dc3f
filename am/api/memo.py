"""Memoising derived forms of large immutable values by identity.

The service hands out the very same advertisement string object while it is valid (see
`Aggregate.advertisement`), so its compressed and XML-escaped forms need computing once per
advertisement rather than once per call. Entries hold the original object, so its `id()`
cannot be reused by another object while the entry exists; the memo is small and bounded.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Below this size deriving is cheaper than remembering (and manifests would churn the memo).
LARGE = 32 * 1024


class IdentityMemo(Generic[T, R]):
    """`derive(obj)` remembered for the last `size` objects, matched by identity."""

    def __init__(self, derive: Callable[[T], R], size: int = 8):
        self._derive = derive
        self._size = size
        self._items: OrderedDict[int, tuple[T, R]] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, obj: T) -> R:
        key = id(obj)
        with self._lock:
            item = self._items.get(key)
            if item is not None and item[0] is obj:
                self._items.move_to_end(key)
                return item[1]
        value = self._derive(obj)
        with self._lock:
            self._items[key] = (obj, value)
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value
