"""Everything that must change in a forked child, in one place: locks that
survive gunicorn's fork (and gevent's monkey-patching after it), and the
threads and sockets of the parent that objects must forget.

A lock held by another thread at the moment of ``fork()`` stays held forever
in the child, where that thread does not exist: the first worker request to
take it would hang. Objects that threads share give their locks here to be
replaced by fresh ones in every child.

Under ``gunicorn --preload -k gevent`` the worker patches ``threading`` only
after the fork, so a lock made before then (when the app was built, or by the
fork hook itself) is an OS lock. A greenlet that waits for it while another
greenlet holds it across a network wait blocks the whole worker, the holder
included. So the same locks are made again once gevent has patched
``threading``, before the worker serves anything.

Objects that own a thread or a socket give a function here that forgets
them in the child (the parent's thread does not exist there, and its socket
is the parent's). On a platform without ``os.register_at_fork`` (Windows)
there is no fork, and nothing to do.
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

Owner = TypeVar("Owner")
Item = TypeVar("Item")

# Weak references, not a WeakKeyDictionary: owners need not be hashable.
_owners: list[tuple[weakref.ref[Any], tuple[str, ...]]] = []
_resets: list[tuple[weakref.ref[Any], Callable[[Any], None]]] = []
_watching_gevent = False


def renew_locks_after_fork(owner: object, *names: str) -> None:
    """In a forked child, and after gevent patches ``threading``, replace
    ``owner``'s lock attributes ``names``."""
    _owners.append((weakref.ref(owner), names))
    _watch_gevent()


def reset_after_fork(owner: Owner, reset: Callable[[Owner], None]) -> None:
    """In a forked child, call ``reset(owner)``, after the locks are renewed
    (so that ``reset`` may take them)."""
    _resets.append((weakref.ref(owner), reset))


def _reset_all() -> None:
    for owner, reset in _alive(_resets):
        reset(owner)


def _renew_all() -> None:
    for owner, names in _alive(_owners):
        for name in names:
            setattr(owner, name, threading.Lock())


def _alive(entries: list[tuple[weakref.ref[Any], Item]]) -> list[tuple[Any, Item]]:
    """The owners still alive in ``entries``, each with its item; the dead
    are dropped from ``entries``."""
    found = [(ref(), item) for ref, item in entries]
    entries[:] = [entry for entry, (owner, _) in zip(entries, found) if owner is not None]
    return [(owner, item) for owner, item in found if owner is not None]


def _watch_gevent() -> None:
    """Hear of gevent's patching of ``threading``, once gevent is loaded (a
    gevent worker class loads it before the app is preloaded)."""
    global _watching_gevent
    if _watching_gevent or "gevent" not in sys.modules:
        return
    from gevent import events

    events.subscribers.append(_on_gevent_event)
    _watching_gevent = True


def _on_gevent_event(event: object) -> None:
    from gevent import events

    # Patching ``_thread`` already changes what ``threading.Lock`` makes.
    if isinstance(event, events.GeventDidPatchModuleEvent) and event.module_name in (
        "thread",
        "threading",
    ):
        _renew_all()


def _after_fork_in_child() -> None:
    _renew_all()
    _reset_all()
    _watch_gevent()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
