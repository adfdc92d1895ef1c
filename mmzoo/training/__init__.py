"""Training a zoo entry from a manifest: the engine behind ``mmzoo train``.

    from mmzoo.training import train
    result = train("gated_classifier", "data/train/manifest.jsonl", preset="tiny",
                   epochs=1, out_dir="runs/gated")

A run writes, under ``out_dir``:

* ``model.keras``: the trained model (``keras.saving.load_model(..., safe_mode=True)``),
* ``metrics.json``: the evaluation metrics and run figures,
* ``history.csv``: one row per epoch (``CSVLogger``),
* ``logs/``: TensorBoard logs,
* ``checkpoints/epoch_NNN.keras``: while training, the model after the latest
  epoch with a finite loss (kept when training diverges; removed when the run
  finishes); with ``keep_checkpoints=True`` every epoch's, all kept,
* ``backup/``: the ``BackupAndRestore`` state while training runs: a run
  killed (even with SIGKILL) and started again with the same arguments
  resumes at the last finished epoch, and with ``deterministic=True`` ends
  with the same weights and metrics as an uninterrupted run,
* ``run_config.json``: every argument, resolved: ``train(**load_run_config(path))``
  or ``mmzoo train --config OUT/run_config.json`` repeats the run.

Started again on an ``out_dir`` that holds a finished run (``metrics.json``),
``train`` trains again from scratch (``overwrite=None``, the default, says so);
``overwrite=False`` (``mmzoo train``) refuses with ``RunExistsError``;
``overwrite=True`` (``mmzoo train --overwrite``) also discards an unfinished
run's backup instead of resuming it.

Distribution (``strategy="mirrored" | "multi_worker" | "tpu"``): the model is
built and compiled inside ``strategy.scope()``; ``batch_size`` is the global
batch, split evenly over the replicas; the training pipeline is distributed
with the strategy (auto-shard policy ``DATA``: every worker runs the same
in-memory pipeline and keeps its share of each global batch). In a
multi-worker run only the chief writes ``out_dir``; the other workers write
to a temporary directory (and keep their own ``backup-<task>`` state in
``out_dir`` for resumption).

The package:

* ``config``: ``RunConfig``, the run's arguments and defaults; config files, ``--set``, the command line;
* ``schedules``: learning-rate schedules;
* ``callbacks``: the callbacks a run adds (backup, checkpoints, NaN stop, per-epoch seeds);
* ``keras_compat``: every patch of Keras internals, guarded;
* ``inputs``: the model built for the data, the examples and epoch datasets;
* ``rundir``: what ``out_dir`` holds, ``overwrite``, resumed history;
* ``loop``: ``train`` and the steps of a run;
* ``reporting``: chance levels and the printed summary.
"""

from mmzoo.training.callbacks import ResumeError, backup_epoch
from mmzoo.training.config import (
    AUTO_CACHE_BYTES,
    CACHE_POLICIES,
    MIXED_PRECISION_POLICIES,
    RUN_ARGUMENTS,
    RunConfig,
    cli_options,
    load_run_config,
    merge_overrides,
    parse_overrides,
)
from mmzoo.training.inputs import build_for_data, corpus_texts
from mmzoo.training.loop import TrainingDiverged, dtype_policy, run, train
from mmzoo.training.reporting import HEADLINE_METRICS, chance_levels, format_result, metric_lines
from mmzoo.training.rundir import RUN_OUTPUTS, RunExistsError
from mmzoo.training.schedules import LR_SCHEDULES, make_lr_schedule

__all__ = [
    "AUTO_CACHE_BYTES", "CACHE_POLICIES", "HEADLINE_METRICS", "LR_SCHEDULES", "MIXED_PRECISION_POLICIES",
    "RUN_ARGUMENTS", "RUN_OUTPUTS", "ResumeError", "RunConfig", "RunExistsError", "TrainingDiverged", "backup_epoch",
    "build_for_data", "chance_levels", "cli_options", "corpus_texts", "dtype_policy", "format_result",
    "load_run_config", "make_lr_schedule", "merge_overrides", "metric_lines", "parse_overrides", "run", "train",
]
