"""The training run: ``train`` and the steps it takes with a ``RunConfig``.

``run(config)`` starts the strategy and the run directory (``_start``),
reads the manifests (``_read_data``), builds and compiles the model
(``_build_model``), makes the epoch datasets (``_make_inputs``), fits with
the run's callbacks (``_callbacks``), then saves, evaluates and writes the
results (``_finish``). ``train(...)`` is the keyword front end.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import tempfile
import time
from typing import Any

import keras

from mmzoo.models.base import dtype_policy
from mmzoo.registry import get_entry
from mmzoo.training import keras_compat
from mmzoo.training.callbacks import (
    BackupAndRestore,
    EpochCheckpoint,
    EpochSeeds,
    TerminateOnNaN,
    UnfreezeTowers,
    backup_epoch,
    last_checkpoint,
    tensorboard_installed,
    write_json,
)
from mmzoo.training.config import AUTO_CACHE_BYTES, RUN_ARGUMENTS, RunConfig, tower_overrides
from mmzoo.training.inputs import build_for_data, epoch_datasets, training_examples
from mmzoo.training.reporting import chance_levels
from mmzoo.training.rundir import (
    csv_column,
    first_missing_dir,
    log,
    prepare_out_dir,
    remove_empty_dirs,
    truncate_history,
)
from mmzoo.training.schedules import make_lr_schedule


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; training stopped.

    Attributes: ``epoch`` (1-based), ``step`` (1-based, within the epoch),
    ``loss`` and ``checkpoint`` (the last good checkpoint, or ``None``).
    """

    def __init__(self, message, epoch=None, step=None, loss=None, checkpoint=None):
        super().__init__(message)
        self.epoch, self.step, self.loss, self.checkpoint = epoch, step, loss, checkpoint


def train(
    name: str | None = None,
    data: str | None = None,
    *,
    val_data: str | None = None,
    epochs: int = 5,
    batch_size: int = 32,
    preset: str | None = None,
    out_dir: str = "runs/model",
    overrides: dict | None = None,
    learning_rate: float | None = None,
    seed: int = 0,
    skip_bad: bool = False,
    verbose: int | str = "auto",
    strategy: str = "default",
    tpu: str | None = None,
    cpu_devices: int | None = None,
    mixed_precision: str | None = None,
    jit_compile: bool | str = "auto",
    steps_per_execution: int = 1,
    deterministic: bool = False,
    early_stopping: int | None = None,
    lr_schedule: str = "constant",
    warmup_steps: int = 0,
    cache: str = "auto",
    keep_checkpoints: bool = False,
    text_preset: str | None = None,
    image_preset: str | None = None,
    train_towers: bool = False,
    unfreeze_after: int | None = None,
    unfreeze_layers: int | None = None,
    unfreeze_lr_factor: float = 0.1,
    lora_rank: int | None = None,
    columns: dict | str | None = None,
    callbacks: list | None = None,
    config=None,
    overwrite: bool | None = None,
) -> dict:
    """Train zoo entry ``name`` on manifest ``data``; returns the result dict.

    The run arguments (``name`` to ``columns``), their defaults and
    meaning are the fields of ``mmzoo.training.RunConfig``. Besides them:

        callbacks: extra Keras callbacks.
        config: a run config (path, dict or ``RunConfig``; see
            ``load_run_config``) giving the arguments not passed explicitly.
        overwrite: what to do when ``out_dir`` holds a run. ``None``: resume
            an unfinished one (its ``backup/``), train a finished one again
            from scratch; ``False``: resume an unfinished one, refuse a
            finished one (``RunExistsError``); ``True``: train from scratch
            either way. Starting from scratch removes the old run's outputs.

    Raises:
        TrainingDiverged: the loss became NaN/inf (the message names the epoch
            and step; the last good checkpoint is kept).
    """
    explicit = {k: v for k, v in locals().items() if k in RUN_ARGUMENTS}
    return run(RunConfig.for_train(explicit, config), callbacks=callbacks, overwrite=overwrite)


def run(config: RunConfig, callbacks: list | None = None, overwrite: bool | None = None) -> dict:
    """Train as ``config`` says (see ``train`` for ``callbacks`` and ``overwrite``)."""
    from tensorflow.python.framework import config as tf_framework_config

    config.validate()
    was_deterministic = tf_framework_config.is_op_determinism_enabled()
    try:
        created = first_missing_dir(config.out_dir)
        state = _start(config, overwrite)
        try:
            _read_data(state)
            _build_model(state)
            _make_inputs(state)
        except BaseException:
            if created:  # a bad manifest or argument leaves no empty run directory behind
                remove_empty_dirs(created)
            raise
        nan_guard = TerminateOnNaN()
        start = time.perf_counter()
        history = state.model.fit(
            state.train_input,
            validation_data=state.val_input,
            epochs=int(config.epochs),
            steps_per_epoch=state.steps_per_epoch,
            callbacks=_callbacks(state, nan_guard, callbacks),
            verbose=config.verbose,
            shuffle=False,  # each epoch's order is fixed by (seed, epoch)
        )
        train_seconds = time.perf_counter() - start
        _raise_if_diverged(state, nan_guard)
        return _finish(state, history, train_seconds)
    finally:
        # Op determinism is process-wide: leave the process as it was.
        if config.deterministic and not was_deterministic:
            tf_framework_config.disable_op_determinism()


@dataclasses.dataclass
class _RunState:
    """What the steps of a run hand on to the next ones."""

    config: RunConfig
    strategy: Any
    chief: bool
    write_dir: str
    backup_dir: str
    records: list | None = None
    val_records: list | None = None
    dist: dict | None = None
    model: Any = None
    examples: list | None = None
    steps_per_epoch: int = 0
    total_steps: int = 0
    base_lr: float | None = None
    first_epoch: int = 0
    decoded_images: Any = None
    train_input: Any = None
    val_input: Any = None


def _start(config: RunConfig, overwrite) -> _RunState:
    """Devices, strategy, seeds and determinism (before TF initialises), then the run directory."""
    import tensorflow as tf

    from mmzoo import distribute

    if config.cpu_devices:
        distribute.configure_cpu_devices(int(config.cpu_devices))
    strategy = distribute.make_strategy(config.strategy, tpu=config.tpu)
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()

    chief = distribute.is_chief(strategy)
    task_type, task_id = distribute.task_info(strategy)
    out_dir = config.out_dir
    write_dir = out_dir if chief else tempfile.mkdtemp(prefix=f"mmzoo_{task_type}{task_id}_")
    backup_dir = os.path.join(out_dir, "backup" if chief else f"backup-{task_type}{task_id}")
    prepare_out_dir(out_dir, backup_dir, overwrite, chief, config.verbose)
    os.makedirs(write_dir, exist_ok=True)
    return _RunState(config, strategy, chief, write_dir, backup_dir)


def _read_data(state: _RunState) -> None:
    """The training and validation records, and the strategy's replica layout."""
    from mmzoo import distribute
    from mmzoo.data import read_manifest

    config = state.config
    state.records = read_manifest(config.data, skip_bad=config.skip_bad, columns=config.columns)
    state.val_records = (read_manifest(config.val_data, skip_bad=config.skip_bad, columns=config.columns)
                         if config.val_data else None)
    state.dist = distribute.describe(state.strategy, global_batch_size=config.batch_size)
    replicas = state.dist["num_replicas"]
    if config.batch_size % replicas:
        raise ValueError(
            f"batch_size (the global batch) must be divisible by the {replicas} replicas of the "
            f"{state.dist['strategy']}. Received: batch_size={config.batch_size}"
        )


def _build_model(state: _RunState) -> None:
    """Build and compile the model under the dtype policy, inside the strategy's scope."""
    config = state.config
    with dtype_policy(config.mixed_precision), state.strategy.scope():
        model = build_for_data(config.name, state.records, preset=config.preset, overrides=tower_overrides(config))
        state.records = _rows_with_text(state.records, model, config.skip_bad)
        if config.skip_bad:  # decode every image once, not once per epoch
            from mmzoo.data.pipeline import validate_images

            state.records, report = validate_images(state.records, model.image_preprocessor.decode_one)
            report.log("mmzoo train")
            if not state.records:
                raise ValueError(f"Every training image failed to decode: {report}")
        state.examples = training_examples(state.records, model)
        state.steps_per_epoch = int(math.ceil(len(state.examples) / config.batch_size))
        state.total_steps = state.steps_per_epoch * int(config.epochs)
        state.base_lr = compile_model(model, config, state.total_steps)
    state.model = model


def _rows_with_text(records, model, skip_bad):
    """The records, less those with an empty text when the model reads text (``skip_bad``);
    without ``skip_bad`` the first one raises naming its row (``mmzoo.data.check_texts``)."""
    from mmzoo.data import check_texts

    records, report = check_texts(records, model, skip_bad)
    report.log("mmzoo train")
    return records


def compile_model(model, config: RunConfig, total_steps: int) -> float:
    """``model.compile()`` with the zoo defaults, then the run's optimizer settings.

    The optimizer the zoo entry picks (``compile()`` with no arguments) is
    rebuilt with the run's learning rate or schedule, so its other settings
    are kept. Returns the base learning rate.
    """
    model.compile()
    optimizer = model.optimizer
    inner = getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer under mixed_float16
    base_lr = float(config.learning_rate) if config.learning_rate is not None else float(
        keras.ops.convert_to_numpy(inner.learning_rate)
    )
    lr = make_lr_schedule(config.lr_schedule, base_lr, total_steps, config.warmup_steps)
    optimizer_config = inner.get_config()
    optimizer_config["learning_rate"] = lr
    new_optimizer = inner.__class__.from_config(optimizer_config)
    keras_compat.compile_forcing_jit(model, config.jit_compile, optimizer=new_optimizer,
                                     steps_per_execution=int(config.steps_per_execution))
    # Build the optimizer over every trainable variable now, so a backup
    # written after any step loads into a fresh run.
    model.optimizer.build(model.trainable_variables)
    return base_lr


def _make_inputs(state: _RunState) -> None:
    """The training batches from the resumed epoch on (images decoded once when they fit), and validation's."""
    import tensorflow as tf

    from mmzoo import distribute
    from mmzoo.data import decode_images, decoded_size, make_dataset

    config, model, strategy = state.config, state.model, state.strategy
    state.first_epoch = backup_epoch(state.backup_dir)
    shard_policy = "data"  # make_dataset pipelines are built from in-memory columns
    if config.cache == "memory" or (config.cache == "auto" and decoded_size(state.examples, model) <= AUTO_CACHE_BYTES):
        state.decoded_images = decode_images(state.examples, model)
        log(config.verbose, f"mmzoo train: {len(state.decoded_images.rows)} training images decoded once, kept in "
                            f"memory ({state.decoded_images.nbytes / 2**20:.0f} MiB; --cache none to decode every "
                            "epoch)")
    train_ds = epoch_datasets(state.examples, model, config.batch_size, config.seed, state.first_epoch,
                              int(config.epochs), state.decoded_images)
    state.train_input = distribute.distribute_dataset(strategy, train_ds, policy=shard_policy)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        keras_compat.build_from_local_batch(model, strategy, train_ds)
        keras_compat.patch_multi_worker_logs()
    if state.val_records:
        val_ds = make_dataset(state.val_records, model, batch_size=config.batch_size, training=False,
                              skip_bad=config.skip_bad, cache=state.decoded_images is not None)
        state.val_input = distribute.distribute_dataset(strategy, val_ds, policy=shard_policy)

    dist = state.dist
    dist.update(steps_per_epoch=state.steps_per_epoch, shard_policy=shard_policy.upper())
    log(
        config.verbose,
        f"mmzoo train: {config.name} with {dist['strategy']}: {dist['num_replicas']} replica(s) on "
        f"{dist['num_workers']} worker(s); global batch {config.batch_size} = {dist['per_replica_batch_size']} per "
        f"replica; {state.steps_per_epoch} steps/epoch"
        + (f"; resuming at epoch {state.first_epoch + 1}" if state.first_epoch else ""),
    )


def _callbacks(state: _RunState, nan_guard: TerminateOnNaN, extra) -> list:
    """The run's callbacks, in the order they must run, then ``extra``."""
    config = state.config
    history_path = os.path.join(state.write_dir, "history.csv")
    if state.first_epoch:
        truncate_history(history_path, state.first_epoch)
    # Order matters: the epoch's logs are on disk before the backup says the
    # epoch is done, so a run killed at any moment resumes with a whole history.
    out = [EpochSeeds(), nan_guard, keras.callbacks.CSVLogger(history_path, append=state.first_epoch > 0)]
    if tensorboard_installed():
        out.append(keras.callbacks.TensorBoard(os.path.join(state.write_dir, "logs")))
    else:
        log(config.verbose, "mmzoo train: TensorBoard logs skipped (pip install tensorboard to write OUT/logs).")
    checkpoints = os.path.join(state.write_dir, "checkpoints")
    if config.unfreeze_after is not None:  # before BackupAndRestore: a resumed run unfreezes before it loads
        out.append(UnfreezeTowers(int(config.unfreeze_after), config.unfreeze_layers,
                                  float(config.unfreeze_lr_factor), resume_epoch=state.first_epoch))
    out += [EpochCheckpoint(checkpoints, keep_all=bool(config.keep_checkpoints)), BackupAndRestore(state.backup_dir)]
    if config.early_stopping:
        out.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss" if state.val_input is not None else "loss",
                patience=int(config.early_stopping),
                restore_best_weights=True,
            )
        )
    out.extend(extra or ())
    return out


def _raise_if_diverged(state: _RunState, nan_guard: TerminateOnNaN) -> None:
    if nan_guard.where is None:
        return
    epoch, step, loss = nan_guard.where
    last = last_checkpoint(os.path.join(state.write_dir, "checkpoints"))
    keep = f"The last good checkpoint is {last}." if last else "No epoch finished with a finite loss."
    raise TrainingDiverged(
        f"Training stopped: the loss became {loss} at epoch {epoch}, step {step}. {keep} "
        "Try a lower learning rate (--learning-rate), a warmup (--warmup-steps) or float32.",
        epoch=epoch, step=step, loss=loss, checkpoint=last,
    )


def _finish(state: _RunState, history, train_seconds: float) -> dict:
    """Save the model, evaluate it, write ``metrics.json`` and ``run_config.json``; the result dict."""
    metrics = _save_and_evaluate(state)
    result = _result(state, history, train_seconds, metrics)
    write_json(os.path.join(state.write_dir, "metrics.json"), result)
    write_json(os.path.join(state.write_dir, "run_config.json"), state.config.saved(_resolved(state, result)))
    if not state.chief:
        shutil.rmtree(state.write_dir, ignore_errors=True)
    return result


def _save_and_evaluate(state: _RunState) -> dict:
    import tensorflow as tf

    from mmzoo.evaluation import evaluate_model

    model, config = state.model, state.config
    model_path = os.path.join(state.write_dir, "model.keras")
    model.save(model_path)
    if not config.keep_checkpoints:  # model.keras is the run's model; nothing resumes from these
        shutil.rmtree(os.path.join(state.write_dir, "checkpoints"), ignore_errors=True)
    eval_model = model
    if isinstance(state.strategy, tf.distribute.MultiWorkerMirroredStrategy):
        # Evaluate every example locally: a fresh copy outside the strategy
        # (the strategy would shard the evaluation data across workers).
        eval_model = keras.saving.load_model(model_path, safe_mode=True)
    return evaluate_model(eval_model, state.val_records or state.records, batch_size=config.batch_size)


def _result(state: _RunState, history, train_seconds: float, metrics: dict) -> dict:
    """The result ``train`` returns and ``metrics.json`` holds."""
    config, model = state.config, state.model
    losses = history.history.get("loss") or csv_column(os.path.join(state.write_dir, "history.csv"), "loss")
    return {
        "model": config.name,
        "task": model.task,
        "preset": config.preset or get_entry(config.name).default_preset,
        "evaluated_on": "val" if state.val_records else "train",
        "metrics": metrics,
        "final_loss": float(losses[-1]) if losses else None,
        "epochs": int(config.epochs),
        "initial_epoch": state.first_epoch,
        "epochs_run": len(history.history.get("loss", [])),
        "train_seconds": round(train_seconds, 2),
        "num_params": int(model.count_params()),
        "model_path": os.path.join(config.out_dir, "model.keras") if state.chief else None,
        "distribution": state.dist,
        "chance": chance_levels(model, state.val_records or state.records, state.records, metrics),
    }


def _resolved(state: _RunState, result: dict) -> dict:
    """The ``resolved`` section of ``run_config.json``: what the run chose (informational)."""
    from mmzoo.version import __version__

    tokenizer = state.model.tokenizer
    return {
        "images_in_memory": state.decoded_images is not None,
        "mmzoo_version": __version__,
        "preset": result["preset"],
        "learning_rate": state.base_lr,
        "steps_per_epoch": state.steps_per_epoch,
        "total_steps": state.total_steps,
        "num_examples": len(state.examples),
        "tokenizer": {
            "mode": tokenizer.mode,
            "vocabulary_size": int(tokenizer.vocabulary_size),
            "sequence_length": int(tokenizer.sequence_length),
        },
        "dropped_overrides": state.config.dropped_overrides(),
        **state.dist,
    }
