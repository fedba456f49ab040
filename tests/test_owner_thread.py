"""OwnerThread: calls run on one thread, in order, with exceptions re-raised in the caller, even at exit time."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from flywheel.live.owner_thread import OwnerThread


def test_calls_run_on_the_owned_thread_and_errors_reach_the_caller() -> None:
    owner = OwnerThread("test-owner")
    try:
        names = {owner.call(lambda: threading.current_thread().name) for _ in range(3)}
        assert names == {"test-owner"}
        assert owner.call(lambda a, b: a + b, 2, 3) == 5
        with pytest.raises(ZeroDivisionError):
            owner.call(lambda: 1 / 0)
        assert owner.call(lambda: "still serving") == "still serving"
        assert owner.call(lambda: owner.call(lambda: "nested")) == "nested"  # no self-deadlock
    finally:
        owner.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        owner.call(lambda: None)


def test_works_from_an_exit_hook_after_executors_refuse_work() -> None:
    """The console saves open sessions from atexit, when ThreadPoolExecutor.submit already raises."""
    script = (
        "import atexit, concurrent.futures\n"
        "from flywheel.live.owner_thread import OwnerThread\n"
        "owner = OwnerThread('exit-owner')\n"
        "pool = concurrent.futures.ThreadPoolExecutor(1)\n"
        "def at_exit():\n"
        "    try:\n"
        "        pool.submit(print, 'pool ran')\n"
        "    except RuntimeError:\n"
        "        print('pool refused')\n"
        "    print(owner.call(lambda: 'owner ran'))\n"
        "atexit.register(at_exit)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["pool", "refused", "owner", "ran"]
