"""Locks that survive gunicorn's fork.

A lock held by another thread at the moment of ``fork()`` stays held forever
in the child, where that thread does not exist: the first worker request to
take it would hang. Objects that threads share give their locks here to be
replaced by fresh ones in every child.
"""

from __future__ import annotations

import os
import threading
import weakref


def renew_locks_after_fork(owner: object, *names: str) -> None:
    """In a forked child, replace ``owner``'s lock attributes ``names``."""
    ref = weakref.ref(owner)

    def renew() -> None:
        target = ref()
        if target is not None:
            for name in names:
                setattr(target, name, threading.Lock())

    os.register_at_fork(after_in_child=renew)
