"""A minimal process pool for the evaluator: one pipe per worker, no shared locks.

``multiprocessing.Pool`` shares one task queue guarded by a lock; a worker killed while holding
it (an interrupt) can make ``Pool.terminate`` wait forever. Here each worker has its own pipe,
the parent hands out one task at a time to whichever worker is idle, and stopping the pool is
SIGTERM to each worker (whose handler kills its sandboxed processes, docs/sandbox.md §5) then
``join``. Workers are forked (they inherit the compiler and limits without pickling).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
from multiprocessing.connection import wait
from typing import Any, Callable, Iterable, Iterator

__all__ = ["imap_unordered"]


class _StartFailed:
    """What a worker sends instead of results when ``init`` raised (e.g. its jail could not be
    mounted): the parent raises it as one clear error instead of a dead pipe."""

    def __init__(self, err: BaseException):
        self.msg = f"{type(err).__name__}: {err}"


def _receive(conn) -> Any:
    try:
        res = conn.recv()
    except (EOFError, ConnectionError):
        raise RuntimeError("an evaluator worker died") from None
    if isinstance(res, _StartFailed):
        raise RuntimeError(f"an evaluator worker could not start: {res.msg}")
    return res


def _send(conn, task: Any) -> None:
    try:
        conn.send(task)
    except (BrokenPipeError, ConnectionError):  # the worker is gone: say why if it told us
        _receive(conn)
        raise RuntimeError("an evaluator worker died") from None


def _serve(conn, init: Callable[[], None], fn: Callable[[Any], Any]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        init()
    except Exception as err:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(_StartFailed(err))
        return
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        conn.send(fn(task))


def imap_unordered(fn: Callable[[Any], Any], tasks: Iterable[Any], n_workers: int,
                   init: Callable[[], None]) -> Iterator[Any]:
    """Yield ``fn(task)`` for every task as workers finish them (``init`` runs once per worker).

    Leaving the generator early (an exception, an interrupt, ``close()``) stops every worker.
    """
    todo = list(tasks)[::-1]
    ctx = mp.get_context("fork")
    procs, conns = [], []
    try:
        for _ in range(max(1, min(n_workers, len(todo)))):
            a, b = ctx.Pipe()
            p = ctx.Process(target=_serve, args=(b, init, fn), daemon=True)
            p.start()
            b.close()
            procs.append(p)
            conns.append(a)
        busy = 0
        for c in conns:
            if todo:
                _send(c, todo.pop())
                busy += 1
        while busy:
            for c in wait([c for c in conns]):
                res = _receive(c)
                busy -= 1
                if todo:
                    _send(c, todo.pop())
                    busy += 1
                yield res
    finally:
        for p in procs:
            if p.is_alive():
                try:
                    os.kill(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for c in conns:
            c.close()
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join()
