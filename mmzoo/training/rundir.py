"""The run directory: what a finished or unfinished run left in ``out_dir``,
what ``overwrite`` does with it, and the files a resumed run continues."""

from __future__ import annotations

import csv
import json
import os
import shutil
import time

from mmzoo.training.callbacks import ResumeError, backup_epoch

# Files and folders a run writes in ``out_dir`` (what ``overwrite`` replaces).
RUN_OUTPUTS = ("model.keras", "metrics.json", "history.csv", "run_config.json", "logs", "checkpoints")


class RunExistsError(FileExistsError):
    """``out_dir`` holds a finished run and ``overwrite=False``."""


def log(verbose, message):
    """Print ``message`` unless ``verbose`` is 0 (silent)."""
    if verbose != 0:
        print(message, flush=True)


def prepare_out_dir(out_dir, backup_dir, overwrite, chief, verbose):
    """Apply ``overwrite`` to what ``out_dir`` already holds (see ``train``)."""
    finished = os.path.exists(os.path.join(out_dir, "metrics.json"))
    try:
        resumable = backup_epoch(backup_dir) > 0
    except ResumeError:
        if overwrite is not True:
            raise
        resumable = True  # damaged: --overwrite discards it below
    if overwrite is False and finished and not resumable:
        raise RunExistsError(
            f"{out_dir} already holds a finished run ({describe_run(out_dir)}). Pass --overwrite "
            "(overwrite=True) to train again from scratch, or a new --out (out_dir) to keep it."
        )
    if overwrite is True and resumable:
        log(verbose, f"mmzoo train: --overwrite: discarding the unfinished run's backup in {backup_dir}")
        shutil.rmtree(backup_dir, ignore_errors=True)
        resumable = False
    if finished and not resumable:
        if overwrite is None:
            log(verbose, f"mmzoo train: {out_dir} holds a finished run ({describe_run(out_dir)}); "
                         "training again from scratch (overwrite=False refuses).")
        if chief:
            remove_outputs(out_dir)


def first_missing_dir(path) -> str | None:
    """The outermost folder of ``path`` that does not exist yet (``None`` when ``path`` exists):
    what a run refused before training removes again (``remove_empty_dirs``)."""
    path = os.path.abspath(path)
    missing = None
    while not os.path.exists(path):
        missing, path = path, os.path.dirname(path)
    return missing


def remove_empty_dirs(top):
    """Remove ``top`` and the folders under it, bottom-up, where they hold no file."""
    for root, _, _ in os.walk(top, topdown=False):
        try:
            os.rmdir(root)
        except OSError:  # not empty
            pass


def remove_outputs(out_dir):
    """Delete the ``RUN_OUTPUTS`` in ``out_dir`` (a new run starts from scratch)."""
    for name in RUN_OUTPUTS:
        path = os.path.join(out_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(path):
            os.remove(path)


def describe_run(out_dir) -> str:
    """``"<model>, <N> epochs, finished <date>"`` of the finished run in ``out_dir``."""
    try:
        with open(os.path.join(out_dir, "metrics.json")) as f:
            done = json.load(f)
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(os.path.getmtime(os.path.join(out_dir, "metrics.json"))))
        return f"{done.get('model')}, {done.get('epochs')} epochs, finished {when}"
    except (OSError, ValueError, AttributeError):
        return "metrics.json"


def truncate_history(path, first_epoch):
    """Keep the header and the rows of epochs before ``first_epoch`` (a resumed
    run rewrites the epoch that was cut short)."""
    if not os.path.exists(path):
        return
    with open(path, newline="") as f:
        lines = f.read().splitlines(keepends=True)
    kept = lines[:1] + [line for line in lines[1:] if line.split(",", 1)[0].strip().isdigit()
                        and int(line.split(",", 1)[0]) < first_epoch]
    with open(path, "w", newline="") as f:
        f.writelines(kept)


def csv_column(path, column) -> list[float]:
    """The values of ``column`` in the CSV at ``path`` (``[]`` when there is no file)."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [float(row[column]) for row in csv.DictReader(f) if row.get(column) not in (None, "")]

