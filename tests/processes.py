"""Shared by the tests that run code in a subprocess: a script's JSON result,
or a process killed midway (training resume, export atomicity)."""

import json
import os
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script_json(path, source, *, timeout):
    """Write ``source`` to ``path`` and run it with this Python on the CPU, the
    repository on its import path. Asserts it exits 0 (showing the end of its
    stderr otherwise); returns the JSON its last line of output prints."""
    path.write_text(source)
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="-1")
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


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
