"""Keeping prometheus-client's multiprocess directory small.

prometheus-client writes one file per process and metric type, and keeps a
dead process's files so that its counts are not lost. Behind gunicorn with
``--max-requests``, and with every CLI run, that is a new set of files each
time: the directory, and the work of every scrape, grow without bound.
:func:`mark_process_dead` folds a dead process's files into one archive file
per type (sums for counters, the extreme or the latest value for gauges)
and deletes them, so the totals stay and the file count stays bounded.
"""

from __future__ import annotations

import fcntl
import glob
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import cast

ENV = "PROMETHEUS_MULTIPROC_DIR"
logger = logging.getLogger("flask_fogredis")
# What becomes of one process's value in the archive, by file kind.
_FOLDS = {
    "counter": "sum",
    "histogram": "sum",
    "gauge_sum": "sum",
    "gauge_max": "max",
    "gauge_min": "min",
    "gauge_mostrecent": "latest",
}
ARCHIVE = "archive"


def mark_process_dead(pid: int, path: str | None = None) -> None:
    """Call from gunicorn's ``child_exit`` in place of prometheus-client's
    function of the same name: drops the dead worker's live gauges and folds
    its other files into the archive. Harmless to repeat, and a no-op when
    no multiprocess directory is set. Never raises: a failure is logged and
    the files stay, so that the arbiter calling it lives on.

    gunicorn calls ``child_exit`` from its ``SIGCHLD`` handler, which may
    interrupt a call under way (two workers recycled at once). The inner
    call then only queues its process, and the outer call folds it: a
    nested one would find prometheus-client half imported, or wait forever
    on the folder lock its own process holds."""
    directory = path or os.environ.get(ENV)
    if not directory:
        return
    _queued.append((pid, directory))
    # A call under way (in this thread or another) folds what is queued; the
    # outer loop takes what was queued just as it let go.
    while _queued and _folding.acquire(blocking=False):
        try:
            while _queued:
                dead, folder = _queued.pop(0)
                try:
                    _mark(dead, folder)
                except Exception:
                    logger.exception(
                        "Could not fold the metric files of process %s in %s; they stay there",
                        dead,
                        folder,
                    )
        finally:
            _folding.release()


# Processes to fold, and whether a call is folding them.
_queued: list[tuple[int, str]] = []
_folding = threading.Lock()


def _mark(pid: int, directory: str) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
    with _locked(directory):
        for kind, how in _FOLDS.items():
            source = os.path.join(directory, f"{kind}_{pid}.db")
            if os.path.exists(source):
                _fold(source, os.path.join(directory, f"{kind}_{ARCHIVE}.db"), how)
                os.remove(source)


def file_count(path: str) -> int:
    """How many metric files ``path`` holds."""
    return len(glob.glob(os.path.join(path, "*.db")))


def _fold(source: str, archive: str, how: str) -> None:
    from prometheus_client.mmap_dict import MmapedDict

    read = cast(
        Callable[[str], Iterable[tuple[str, float, float, int]]],
        MmapedDict.read_all_values_from_file,
    )
    kept = {}
    if os.path.exists(archive):
        kept = {key: (value, stamp) for key, value, stamp, _ in read(archive)}
    target = MmapedDict(archive)  # type: ignore[no-untyped-call]
    try:
        for key, value, stamp, _ in read(source):
            if key in kept:
                old, old_stamp = kept[key]
                if how == "sum":
                    value, stamp = old + value, max(stamp, old_stamp)
                elif how == "max":
                    value = max(old, value)
                elif how == "min":
                    value = min(old, value)
                elif stamp < old_stamp:  # latest
                    value, stamp = old, old_stamp
            kept[key] = (value, stamp)
            target.write_value(key, value, stamp)  # type: ignore[no-untyped-call]
    finally:
        target.close()  # type: ignore[no-untyped-call]


@contextmanager
def _locked(directory: str) -> Iterator[None]:
    """One folder at a time: the master folding a killed worker and a
    process folding itself at exit must not write the archive together."""
    with open(os.path.join(directory, ".fold.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
