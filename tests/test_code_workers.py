"""The evaluator's process pool (simulations/code/workers.py): results, and clear errors when a
worker cannot start or dies."""
import os

import pytest

from simulations.code.workers import imap_unordered


def _square(x):
    return x * x


def _fail_init():
    raise OSError(2, "mount /gone on jail/pch: No such file or directory")


def _die(x):
    os._exit(3)


def test_every_task_is_done_once():
    assert sorted(imap_unordered(_square, range(7), 2, lambda: None)) == [x * x for x in range(7)]


def test_a_worker_that_cannot_start_gives_one_clear_error():
    with pytest.raises(RuntimeError, match=r"could not start: FileNotFoundError: .*mount /gone"):
        list(imap_unordered(_square, range(3), 2, _fail_init))


def test_a_worker_that_dies_is_an_error_not_a_hang():
    with pytest.raises(RuntimeError, match="worker died"):
        list(imap_unordered(_die, range(3), 1, lambda: None))
