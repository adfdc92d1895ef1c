"""Files written whole or not at all: what a killed process or a reading server may meet."""

from __future__ import annotations

import os


def write_then_rename(path, write, suffix=".tmp"):
    """``write(path + suffix)``, then rename it to ``path`` (atomic): a process killed midway leaves
    the old ``path`` or the new one, never half a file, and a server reading ``path`` sees one or
    the other; a ``write`` that raises leaves no temporary file behind. ``suffix`` keeps the
    extension Keras' savers require (``.weights.h5``, ``.keras``)."""
    tmp = path + suffix
    try:
        write(tmp)
    except BaseException:
        if os.path.isfile(tmp):
            os.remove(tmp)  # what failed midway leaves nothing behind
        raise
    os.replace(tmp, path)


def write_text_then_rename(path, text) -> str:
    """``text`` written to ``path`` by ``write_then_rename``; returns ``path``."""

    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)

    write_then_rename(path, write)
    return path
