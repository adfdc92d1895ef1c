"""Shared by the tests that kill a subprocess midway (training resume, export atomicity)."""

import signal
import time


def sigkill_when(proc, ready, *, timeout, ended_early, too_late, poll=0.05):
    """Poll ``ready()`` until it is true, then SIGKILL ``proc`` and reap it.

    Fails with ``ended_early()`` (called then, so it may read the process's
    output) when ``proc`` exits before it is ready, and with ``too_late`` after
    ``timeout`` seconds; never leaves ``proc`` running. Asserts it died by SIGKILL.
    """
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, ended_early()
            assert time.monotonic() < deadline, too_late
            time.sleep(poll)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
