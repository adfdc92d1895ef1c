"""Capturing what native code (TensorFlow's C++ runtime, the LiteRT converter's MLIR
diagnostics) writes straight to file descriptor 2, where Python's ``sys.stderr`` cannot
filter it."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile


@contextlib.contextmanager
def captured_native_stderr():
    """Redirect file descriptor 2 to a temporary file inside the block.

    Yields a list that holds, after the block (also when it raised), the
    captured text as its one item. Native code writes to descriptor 2 whatever
    ``sys.stderr`` is (a notebook kernel or pytest replaces the Python stream
    only); where there is no descriptor 2 nothing is redirected and the list
    stays empty.
    """
    captured_text: list[str] = []
    fd = 2
    try:
        os.fstat(fd)
    except OSError:
        yield captured_text
        return
    with contextlib.suppress(AttributeError, OSError, ValueError):
        sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), fd)
        try:
            yield captured_text
        finally:
            with contextlib.suppress(AttributeError, OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            captured.seek(0)
            captured_text.append(captured.read().decode("utf-8", "replace"))
