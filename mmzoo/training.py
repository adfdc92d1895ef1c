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
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
from typing import Any

import keras
import numpy as np

from mmzoo.registry import build, get_entry

LR_SCHEDULES = ("constant", "cosine")
MIXED_PRECISION_POLICIES = ("mixed_float16", "mixed_bfloat16")

# Arguments of ``train`` that make up a run (what ``run_config.json`` holds).
RUN_ARGUMENTS = (
    "name", "data", "val_data", "epochs", "batch_size", "preset", "out_dir", "overrides",
    "learning_rate", "seed", "skip_bad", "verbose", "strategy", "tpu", "cpu_devices",
    "mixed_precision", "jit_compile", "steps_per_execution", "deterministic", "early_stopping",
    "lr_schedule", "warmup_steps", "cache", "keep_checkpoints",
)
CACHE_POLICIES = ("auto", "memory", "none")
# ``cache="auto"`` keeps decoded training images in memory up to this size.
AUTO_CACHE_BYTES = 2 * 1024**3
# Command-line spellings accepted in config files.
_CONFIG_ALIASES = {"out": "out_dir"}


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; training stopped.

    Attributes: ``epoch`` (1-based), ``step`` (1-based, within the epoch),
    ``loss`` and ``checkpoint`` (the last good checkpoint, or ``None``).
    """

    def __init__(self, message, epoch=None, step=None, loss=None, checkpoint=None):
        super().__init__(message)
        self.epoch, self.step, self.loss, self.checkpoint = epoch, step, loss, checkpoint


class RunExistsError(FileExistsError):
    """``out_dir`` holds a finished run and ``overwrite=False``."""


# Files and folders a run writes in ``out_dir`` (what ``overwrite`` replaces).
RUN_OUTPUTS = ("model.keras", "metrics.json", "history.csv", "run_config.json", "logs", "checkpoints")


# ---------------------------------------------------------------- overrides
def parse_overrides(pairs) -> dict[str, Any]:
    """``["a=1", "image_tower_kwargs.filters=[8,16]", "fusion=gated"]`` to kwargs.

    Values are parsed as JSON when they parse (numbers, lists, booleans,
    null), else kept as strings; dotted keys build nested dicts.

    >>> parse_overrides(["dropout=0.1", "image_tower_kwargs.dim=32", "fusion=gated"])
    {'dropout': 0.1, 'image_tower_kwargs': {'dim': 32}, 'fusion': 'gated'}
    """
    out: dict[str, Any] = {}
    for pair in pairs or ():
        if "=" not in pair:
            raise ValueError(f"--set expects key=value. Received: {pair!r}")
        key, raw = pair.split("=", 1)
        key = key.strip()
        if not key:
            raise ValueError(f"--set expects a non-empty key. Received: {pair!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = out
        parts = key.split(".")
        if any(not p for p in parts):
            raise ValueError(f"--set key has an empty part. Received: {pair!r}")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"--set key {key!r} conflicts with an earlier value.")
        node[parts[-1]] = value
    return out


def merge_overrides(base: dict | None, extra: dict | None) -> dict:
    """Deep-merge two override dicts (``extra`` wins)."""
    out = dict(base or {})
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_overrides(out[key], value)
        else:
            out[key] = value
    return out


# ---------------------------------------------------------------- run config
def load_run_config(path_or_dict) -> dict[str, Any]:
    """A run config (YAML or JSON file, or a dict) as ``train`` keyword arguments.

    Keys are ``train``'s argument names or the ``mmzoo train`` flag names
    (``out``, dashes for underscores); ``set`` (a list of ``key=value``)
    merges into ``overrides``. The informational ``resolved`` section of a
    saved ``run_config.json`` is ignored. Unknown keys raise ``ValueError``.
    """
    if isinstance(path_or_dict, dict):
        raw = dict(path_or_dict)
    else:
        path = os.fspath(path_or_dict)
        if not os.path.exists(path):
            raise FileNotFoundError(f"No run config file at {path!r}.")
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if path.endswith((".yaml", ".yml")):
            try:
                import yaml
            except ImportError:
                raise ValueError(
                    f"Reading {path!r} needs PyYAML (pip install pyyaml); or write the config as JSON."
                ) from None
            raw = yaml.safe_load(text) or {}
        else:
            try:
                raw = json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(f"Run config {path!r} is not valid JSON: {e}") from None
        if not isinstance(raw, dict):
            raise ValueError(f"A run config must be a mapping of options. Received: {type(raw).__name__} in {path!r}")
    raw.pop("resolved", None)
    options: dict[str, Any] = {}
    set_pairs = []
    for key, value in raw.items():
        key = _CONFIG_ALIASES.get(key.replace("-", "_"), key.replace("-", "_"))
        if key == "set":
            set_pairs.extend([value] if isinstance(value, str) else list(value or ()))
        elif key == "overrides":
            options["overrides"] = merge_overrides(options.get("overrides"), value or {})
        elif key in RUN_ARGUMENTS:
            options[key] = value
        else:
            raise ValueError(f"Unknown run config key {key!r}. Known keys: {sorted(RUN_ARGUMENTS + ('set',))}")
    if set_pairs:
        options["overrides"] = merge_overrides(options.get("overrides"), parse_overrides(set_pairs))
    return options


def cli_options(namespace) -> dict[str, Any]:
    """``train`` keyword arguments from a parsed ``mmzoo train`` command line.

    Precedence: flags given on the command line, then the ``--config`` file,
    then ``train``'s defaults; ``--set`` pairs merge over the config's
    overrides. (The ``train`` parser leaves flags that were not given unset.)
    """
    given = {k: v for k, v in vars(namespace).items()
             if k not in ("command", "fn", "config", "set", "quiet", "json", "overwrite")}
    options = load_run_config(namespace.config) if getattr(namespace, "config", None) else {}
    if "out" in given:
        given["out_dir"] = given.pop("out")
    if getattr(namespace, "quiet", False):
        given["verbose"] = 2
    unknown = sorted(k for k in given if k not in RUN_ARGUMENTS)
    if unknown:
        raise ValueError(f"Unknown train options {unknown}. Known: {sorted(RUN_ARGUMENTS)}")
    options.update(given)
    if getattr(namespace, "set", None):
        options["overrides"] = merge_overrides(options.get("overrides"), parse_overrides(namespace.set))
    if not options.get("name") or not options.get("data"):
        raise ValueError(
            "mmzoo train needs a model NAME and --data (on the command line or in --config). "
            f"Received: name={options.get('name')!r}, data={options.get('data')!r}"
        )
    return options


def _jsonable(value):
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------- building
def corpus_texts(records, task: str, uses_captions: bool = False) -> list[str]:
    if task == "classification":
        texts = [r.text for r in records if r.text]
        if uses_captions:  # multi-task classifiers also read the captions
            texts.extend(c for r in records for c in r.captions or [])
        return texts
    texts = []
    for r in records:
        texts.extend(r.captions or [])
    return texts


def _auto_sequence_length(texts, task: str) -> int:
    longest = max((len(t.split()) for t in texts), default=8)
    extra = 2 if task == "captioning" else 0
    return int(min(64, max(8, longest + extra)))


def build_for_data(name: str, records, preset: str | None = None, overrides: dict | None = None):
    """Build zoo entry ``name`` with a tokenizer learned from ``records``' texts
    and (for classifiers) the label names found in them."""
    from mmzoo.data import label_names_from_records
    from mmzoo.preprocessing import TextTokenizer

    entry = get_entry(name)
    overrides = dict(overrides or {})
    if "tokenizer" not in overrides:
        texts = corpus_texts(records, entry.task, getattr(entry.builder, "uses_captions", False))
        if not texts:
            raise ValueError(
                f"The training data has no {'text' if entry.task == 'classification' else 'caption'} "
                f"column values to learn a vocabulary from (zoo entry '{name}' is a {entry.task} model)."
            )
        seq_len = int(overrides.pop("sequence_length", 0) or _auto_sequence_length(texts, entry.task))
        overrides["tokenizer"] = TextTokenizer.from_corpus(
            texts,
            mode=overrides.pop("tokenizer_mode", "word"),
            vocabulary_size=int(overrides.pop("vocabulary_size", 8000)),
            sequence_length=seq_len,
            add_start_end=entry.task == "captioning",
        )
    if entry.task == "classification" and "label_names" not in overrides:
        overrides["label_names"] = label_names_from_records(records)
        if any(isinstance(r.label, (list, tuple)) for r in records):
            overrides.setdefault("mode", "multilabel")
    return build(name, preset=preset, **overrides)


# ---------------------------------------------------------------- schedules
def make_lr_schedule(kind: str, learning_rate: float, total_steps: int, warmup_steps: int = 0):
    """The learning rate (a float) or ``LearningRateSchedule`` for a run.

    ``"constant"``: ``learning_rate`` throughout, after a linear warmup from 0
    over ``warmup_steps`` when given. ``"cosine"``: linear warmup from 0 to
    ``learning_rate`` over ``warmup_steps``, then cosine decay to 0 at
    ``total_steps``.

    >>> s = make_lr_schedule("cosine", 1e-3, total_steps=100, warmup_steps=10)
    >>> [round(float(s(step)), 6) for step in (0, 5, 10, 55, 100)]
    [0.0, 0.0005, 0.001, 0.0005, 0.0]
    """
    if kind not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {list(LR_SCHEDULES)}. Received: lr_schedule={kind!r}")
    if not learning_rate or learning_rate <= 0:
        raise ValueError(f"learning_rate must be positive. Received: learning_rate={learning_rate}")
    warmup_steps = int(warmup_steps or 0)
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0. Received: warmup_steps={warmup_steps}")
    if kind == "constant" and warmup_steps == 0:
        return float(learning_rate)
    total_steps = int(total_steps)
    if kind == "cosine" and warmup_steps >= total_steps:
        raise ValueError(
            "warmup_steps must be smaller than the run's total steps for a cosine schedule. "
            f"Received: warmup_steps={warmup_steps}, total steps={total_steps}"
        )
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else float(learning_rate),
        decay_steps=max(1, total_steps - warmup_steps),
        alpha=1.0 if kind == "constant" else 0.0,  # alpha=1: no decay
        warmup_target=float(learning_rate) if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


# ---------------------------------------------------------------- callbacks
def _finite(logs) -> bool:
    loss = (logs or {}).get("loss")
    return loss is None or bool(np.isfinite(loss))


class _BackupAndRestore(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` whose backup survives a SIGKILL at any moment.

    Each epoch writes ``epoch_N.weights.h5`` (temporary file, then renamed)
    and only then points ``training_metadata.json`` at it (atomic rename), so
    the metadata never names half-written or newer weights. Epochs that end
    with a non-finite loss are not backed up, and the backup is kept when
    training diverged.
    """

    def _load_model(self):
        if not os.path.exists(self._training_metadata_path):
            return
        with open(self._training_metadata_path) as f:
            meta = json.load(f)
        weights = os.path.join(self.backup_dir, meta["weights"])
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(weights)
        self.model._initial_epoch = int(meta["epoch"])

    def on_epoch_end(self, epoch, logs=None):
        if _finite(logs):
            super().on_epoch_end(epoch, logs)

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        name = f"epoch_{self._current_epoch}.weights.h5"
        path = os.path.join(self.backup_dir, name)
        tmp = path + ".tmp.weights.h5"
        self.model.save_weights(tmp, overwrite=True)
        os.replace(tmp, path)
        meta_tmp = self._training_metadata_path + ".tmp"
        with open(meta_tmp, "w") as f:
            json.dump({"epoch": self._current_epoch, "batch": self._last_batch_seen, "weights": name}, f)
        os.replace(meta_tmp, self._training_metadata_path)
        for other in os.listdir(self.backup_dir):
            if other.endswith(".weights.h5") and other != name:
                os.remove(os.path.join(self.backup_dir, other))

    def on_train_end(self, logs=None):
        if not getattr(self.model, "_mmzoo_diverged", None):
            super().on_train_end(logs)


def backup_epoch(backup_dir: str) -> int:
    """The epoch a run resumes at from ``backup_dir`` (0 when there is no backup)."""
    path = os.path.join(backup_dir, "training_metadata.json")
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return int(json.load(f).get("epoch", 0))


class _EpochCheckpoint(keras.callbacks.Callback):
    """Saves ``checkpoints/epoch_NNN.keras`` after every epoch with a finite loss.

    With ``keep_all=False`` only the latest is kept (the one a diverged run
    points at): each save removes the earlier ones.
    """

    def __init__(self, directory, keep_all=True):
        super().__init__()
        self.directory = directory
        self.keep_all = keep_all
        self.last_path = None

    def on_epoch_end(self, epoch, logs=None):
        if not _finite(logs):
            return
        os.makedirs(self.directory, exist_ok=True)
        name = f"epoch_{epoch + 1:03d}.keras"
        path = os.path.join(self.directory, name)
        tmp = path + ".tmp.keras"
        self.model.save(tmp)
        os.replace(tmp, path)
        self.last_path = path
        if not self.keep_all:
            for other in os.listdir(self.directory):
                if other.startswith("epoch_") and other.endswith(".keras") and other != name:
                    os.remove(os.path.join(self.directory, other))


class _TerminateOnNaN(keras.callbacks.TerminateOnNaN):
    """``TerminateOnNaN`` that remembers where (epoch, step) the loss went bad."""

    def __init__(self):
        super().__init__(raise_error=False)
        self.where = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if self.where is None and loss is not None and not np.isfinite(loss):
            self.where = (self._epoch + 1, int(batch) + 1, float(loss))
            self.model._mmzoo_diverged = self.where
        super().on_batch_end(batch, logs)


class _EpochSeeds(keras.callbacks.Callback):
    """Reseeds every layer's ``SeedGenerator`` (dropout, ...) at each epoch start.

    The random stream of epoch ``e`` is then a function of the model's
    construction seed and ``e`` alone, so a resumed run draws the same
    dropout masks as an uninterrupted one.
    """

    def on_train_begin(self, logs=None):
        self._generators = []
        for layer in self.model._flatten_layers(include_self=True, recursive=True):
            for generator in getattr(layer, "_seed_generators", ()):
                base = int(np.asarray(keras.ops.convert_to_numpy(generator.state))[0])
                self._generators.append((generator, base))

    def on_epoch_begin(self, epoch, logs=None):
        for generator, base in self._generators:
            seed = (base + 1_000_003 * (epoch + 1)) % (2**31 - 1)
            generator.state.assign(np.asarray([seed, 0], dtype=generator.state.dtype))


# ---------------------------------------------------------------- data
def _examples(records, task, uses_captions=False):
    """One record per training example: captioned data (matching, captioning,
    models with ``uses_captions``) gets one record per (image, caption) pair,
    as ``make_dataset`` expands them."""
    if (task != "classification" or uses_captions) and any(r.captions for r in records):
        return [dataclasses.replace(r, captions=[c]) for r in records for c in r.captions]
    return list(records)


def _epoch_datasets(examples, model, batch_size, seed, first_epoch, epochs, decoded_images=None):
    """The training batches of epochs ``first_epoch .. epochs-1``, back to back.

    Epoch ``e`` visits ``examples`` in the permutation drawn from ``(seed,
    e)``, fixed in the pipeline (not reshuffled per iterator: Keras iterates
    a dataset once more to build the model, and a distributed copy
    iterates its own). A resumed run, a distributed run and an uninterrupted
    run see exactly the same batches. With ``decoded_images`` every epoch
    gathers its images from that one in-memory copy instead of decoding.
    """
    from mmzoo.data import make_dataset

    first_epoch = min(first_epoch, epochs - 1)
    dataset = None
    for epoch in range(first_epoch, epochs):
        order = np.random.default_rng([int(seed), epoch]).permutation(len(examples))
        ds = make_dataset([examples[i] for i in order], model, batch_size=batch_size, training=True, shuffle=False,
                          decoded_images=decoded_images)
        dataset = ds if dataset is None else dataset.concatenate(ds)
    dataset.num_examples = len(examples)
    return dataset


# ---------------------------------------------------------------- training
@contextlib.contextmanager
def dtype_policy(policy):
    """Build (and compile) models under the Keras dtype ``policy`` inside the block.

    ``None`` or ``"float32"`` leaves the policy alone. The previous global
    policy is restored on exit, so only the models built inside the block
    compute in mixed precision (the zoo keeps their output layers float32).
    """
    previous = keras.config.dtype_policy()
    if policy and policy != "float32":
        keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _validate(epochs, batch_size, mixed_precision, steps_per_execution, early_stopping, lr_schedule, warmup_steps):
    if int(epochs) < 1:
        raise ValueError(f"epochs must be positive. Received: epochs={epochs}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be positive. Received: batch_size={batch_size}")
    if mixed_precision not in (None, "float32", *MIXED_PRECISION_POLICIES):
        raise ValueError(
            f"mixed_precision must be one of {list(MIXED_PRECISION_POLICIES)} or None. "
            f"Received: mixed_precision={mixed_precision!r}"
        )
    if int(steps_per_execution) < 1:
        raise ValueError(f"steps_per_execution must be positive. Received: steps_per_execution={steps_per_execution}")
    if early_stopping is not None and int(early_stopping) < 1:
        raise ValueError(f"early_stopping (patience) must be positive. Received: early_stopping={early_stopping}")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {list(LR_SCHEDULES)}. Received: lr_schedule={lr_schedule!r}")
    if int(warmup_steps or 0) < 0:
        raise ValueError(f"warmup_steps must be >= 0. Received: warmup_steps={warmup_steps}")


def _compile(model, learning_rate, schedule_kind, warmup_steps, total_steps, jit_compile, steps_per_execution):
    """``model.compile()`` with the zoo defaults, then the run's optimizer settings.

    The optimizer the zoo entry picks (``compile()`` with no arguments) is
    rebuilt with the run's learning rate or schedule, so its other settings
    are kept. Returns the base learning rate.
    """
    model.compile()
    optimizer = model.optimizer
    inner = getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer under mixed_float16
    base_lr = float(learning_rate) if learning_rate is not None else float(
        keras.ops.convert_to_numpy(inner.learning_rate)
    )
    lr = make_lr_schedule(schedule_kind, base_lr, total_steps, warmup_steps)
    config = inner.get_config()
    config["learning_rate"] = lr
    new_optimizer = inner.__class__.from_config(config)
    model.compile(optimizer=new_optimizer, jit_compile=jit_compile, steps_per_execution=int(steps_per_execution))
    if jit_compile is True and not model.jit_compile:
        _force_jit(model)
    # Build the optimizer over every trainable variable now, so a backup
    # written after any step loads into a fresh run (models that skip
    # gradient-less variables would otherwise build it over a subset).
    model.optimizer.build(model.trainable_variables)
    return base_lr


def _force_jit(model):
    """Honour ``jit_compile=True`` when only the preprocessing layers block it.

    Keras refuses XLA when any tracked layer has ``supports_jit=False``; a zoo
    model tracks its ``tokenizer`` and ``image_preprocessor`` (string ops),
    but they run in the ``tf.data`` pipeline, never in the train step. Under
    op determinism Keras' refusal stands (XLA is not deterministic there).
    """
    from tensorflow.python.framework.config import is_op_determinism_enabled

    if is_op_determinism_enabled():
        print("mmzoo train: --jit-compile is ignored with --deterministic (XLA ops are not deterministic).")
        return
    preprocessing = []
    for attr in ("tokenizer", "image_preprocessor"):
        layer = getattr(model, attr, None)
        if layer is not None:
            preprocessing.extend(layer._flatten_layers(include_self=True, recursive=True))
    ids = {id(layer) for layer in preprocessing}
    blocking = [layer.name for layer in model._flatten_layers() if not layer.supports_jit and id(layer) not in ids]
    if blocking:
        print(f"mmzoo train: --jit-compile is ignored: layers {blocking} do not support XLA.")
        return
    model._jit_compile = True


def _build_from_local_batch(model, strategy, dataset):
    """Work around Keras' symbolic build under ``MultiWorkerMirroredStrategy``.

    Before training, Keras (3.15) all-reduces the first distributed batch to
    build metrics and optimizer; the collective all-reduce of that strategy
    rejects nested (dict) batches. Build from one local batch instead (only
    its shapes matter) and skip Keras' reduce.
    """
    batch = next(iter(dataset.take(1)))

    def symbolic_build(iterator=None, data_batch=None):
        with strategy.scope():
            model._symbolic_build(data_batch=batch)

    model._maybe_symbolic_build = symbolic_build


def _patch_keras_multi_worker_logs():
    """Work around Keras 3.15 reducing scalar step logs with ``axis=0`` under
    ``MultiWorkerMirroredStrategy`` ("Invalid reduction dimension 0 for input
    with 0 dimensions"): scalars are all-reduced with ``axis=None``; every
    other value goes to Keras' own ``reduce_per_replica``. Idempotent."""
    from keras.src.backend.tensorflow import trainer as tf_trainer

    if getattr(tf_trainer.reduce_per_replica, "_mmzoo_patched", False):
        return
    import tensorflow as tf

    original = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and reduction in ("auto", "mean"):
            def reduce(v):
                # With one replica per worker the values are plain tensors.
                if all(getattr(t, "shape", None) is not None and t.shape.rank == 0
                       for t in strategy.experimental_local_results(v)):
                    return strategy.reduce("MEAN", v, axis=None)
                return original(v, strategy, reduction)

            return keras.tree.map_structure(reduce, values)
        return original(values, strategy, reduction)

    reduce_per_replica._mmzoo_patched = True
    tf_trainer.reduce_per_replica = reduce_per_replica


def _log(verbose, message):
    if verbose != 0:
        print(message, flush=True)


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
    callbacks: list | None = None,
    config=None,
    overwrite: bool | None = None,
) -> dict:
    """Train zoo entry ``name`` on manifest ``data``; returns the result dict.

    Args:
        name: zoo entry (``mmzoo.list_models()``).
        data, val_data: manifests (JSONL/CSV, COCO, Flickr8k, TFRecord).
        epochs: epochs to train (a resumed run trains the remaining ones).
        batch_size: the global batch (split over the replicas).
        preset, overrides: builder preset and keyword overrides.
        learning_rate: base learning rate (default: the zoo entry's).
        seed: seeds Keras, NumPy, Python and the data order.
        skip_bad: skip undecodable images (and report them).
        verbose: Keras ``fit`` verbosity (``"auto"``: progress bars).
        strategy: ``"default"``, ``"mirrored"``, ``"multi_worker"``
            (``TF_CONFIG``) or ``"tpu"`` (``tpu``: the TPU's name).
        cpu_devices: split the CPU into this many logical devices first
            (mirrored training without GPUs; fresh processes only).
        mixed_precision: ``"mixed_float16"`` or ``"mixed_bfloat16"``.
        jit_compile, steps_per_execution: passed to ``compile``.
        deterministic: also enable TensorFlow op determinism (bitwise
            repeatable runs and resumption).
        early_stopping: patience in epochs on ``val_loss`` (``loss`` without
            validation data); the best weights are restored.
        lr_schedule: ``"constant"`` or ``"cosine"``, after ``warmup_steps``
            steps of linear warmup.
        cache: ``"memory"`` decodes the training images once and keeps
            them in memory for every epoch (``mmzoo.data.decode_images``);
            ``"none"`` reads and decodes the files every epoch; ``"auto"``
            (default) is ``"memory"`` when the decoded images take at most
            ``AUTO_CACHE_BYTES`` (2 GiB), else ``"none"``.
        keep_checkpoints: keep ``checkpoints/epoch_NNN.keras`` of every
            epoch (15 MB each for a default-preset classifier); by default
            only the latest is kept while training and none once it finishes.
        callbacks: extra Keras callbacks.
        overwrite: what to do when ``out_dir`` holds a run. ``None``: resume
            an unfinished one (its ``backup/``), train a finished one again
            from scratch; ``False``: resume an unfinished one, refuse a
            finished one (``RunExistsError``); ``True``: train from scratch
            either way. Starting from scratch removes the old run's outputs.
        config: a run config (path or dict, see ``load_run_config``) giving
            the arguments not passed explicitly.

    Raises:
        TrainingDiverged: the loss became NaN/inf (the message names the epoch
            and step; the last good checkpoint is kept).
    """
    if config is not None:
        explicit = {k: v for k, v in locals().items() if k in RUN_ARGUMENTS}
        defaults = train.__kwdefaults__
        from_config = load_run_config(config)
        for key, value in explicit.items():
            is_default = value is None if key in ("name", "data") else value == defaults.get(key)
            if not is_default or key not in from_config:
                from_config[key] = value
        return train(**from_config, callbacks=callbacks, overwrite=overwrite)
    if not name or not data:
        raise ValueError(f"train needs a model name and a training manifest. Received: name={name!r}, data={data!r}")
    _validate(epochs, batch_size, mixed_precision, steps_per_execution, early_stopping, lr_schedule, warmup_steps)
    if cache not in CACHE_POLICIES:
        raise ValueError(f"cache must be one of {list(CACHE_POLICIES)}. Received: cache={cache!r}")
    from tensorflow.python.framework import config as tf_framework_config

    arguments = {k: v for k, v in locals().items() if k in RUN_ARGUMENTS or k in ("callbacks", "overwrite")}
    was_deterministic = tf_framework_config.is_op_determinism_enabled()
    try:
        return _train(**arguments)
    finally:
        # Op determinism is process-wide: leave the process as it was.
        if deterministic and not was_deterministic:
            tf_framework_config.disable_op_determinism()


def _train(
    *, name, data, val_data, epochs, batch_size, preset, out_dir, overrides, learning_rate, seed, skip_bad,
    verbose, strategy, tpu, cpu_devices, mixed_precision, jit_compile, steps_per_execution, deterministic,
    early_stopping, lr_schedule, warmup_steps, cache, keep_checkpoints, callbacks, overwrite,
):
    import tensorflow as tf

    from mmzoo import distribute
    from mmzoo.data import decode_images, decoded_size, make_dataset, read_manifest
    from mmzoo.metrics import evaluate_model

    # Devices and the strategy first: both must exist before TF initialises.
    if cpu_devices:
        distribute.configure_cpu_devices(int(cpu_devices))
    strat = distribute.make_strategy(strategy, tpu=tpu)
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()

    chief = distribute.is_chief(strat)
    task_type, task_id = distribute.task_info(strat)
    write_dir = out_dir if chief else tempfile.mkdtemp(prefix=f"mmzoo_{task_type}{task_id}_")
    backup_dir = os.path.join(out_dir, "backup" if chief else f"backup-{task_type}{task_id}")
    _prepare_out_dir(out_dir, backup_dir, overwrite, chief, verbose)
    os.makedirs(write_dir, exist_ok=True)

    records = read_manifest(data, skip_bad=skip_bad)
    val_records = read_manifest(val_data, skip_bad=skip_bad) if val_data else None
    dist = distribute.describe(strat, global_batch_size=batch_size)
    replicas = dist["num_replicas"]
    if batch_size % replicas:
        raise ValueError(
            f"batch_size (the global batch) must be divisible by the {replicas} replicas of the "
            f"{dist['strategy']}. Received: batch_size={batch_size}"
        )

    with dtype_policy(mixed_precision), strat.scope():
        model = build_for_data(name, records, preset=preset, overrides=overrides)
        if skip_bad:  # decode every image once, not once per epoch
            from mmzoo.data.pipeline import validate_images

            records, report = validate_images(records, model.image_preprocessor.decode_one)
            report.log("mmzoo train")
            if not records:
                raise ValueError(f"Every training image failed to decode: {report}")
        examples = _examples(records, model.task, getattr(model, "uses_captions", False))
        steps_per_epoch = int(math.ceil(len(examples) / batch_size))
        total_steps = steps_per_epoch * int(epochs)
        base_lr = _compile(
            model, learning_rate, lr_schedule, warmup_steps, total_steps, jit_compile, steps_per_execution
        )

    first_epoch = backup_epoch(backup_dir)
    shard_policy = "data"  # make_dataset pipelines are built from in-memory columns
    decoded_images = None
    if cache == "memory" or (cache == "auto" and decoded_size(examples, model) <= AUTO_CACHE_BYTES):
        decoded_images = decode_images(examples, model)
        _log(verbose, f"mmzoo train: {len(decoded_images.rows)} training images decoded once, kept in memory "
                      f"({decoded_images.nbytes / 2**20:.0f} MiB; --cache none to decode every epoch)")
    train_ds = _epoch_datasets(examples, model, batch_size, seed, first_epoch, int(epochs), decoded_images)
    train_input = distribute.distribute_dataset(strat, train_ds, policy=shard_policy)
    if isinstance(strat, tf.distribute.MultiWorkerMirroredStrategy):
        _build_from_local_batch(model, strat, train_ds)
        _patch_keras_multi_worker_logs()
    val_input = None
    if val_records:
        val_ds = make_dataset(val_records, model, batch_size=batch_size, training=False, skip_bad=skip_bad,
                              cache=decoded_images is not None)
        val_input = distribute.distribute_dataset(strat, val_ds, policy=shard_policy)

    dist.update(steps_per_epoch=steps_per_epoch, shard_policy=shard_policy.upper())
    _log(
        verbose,
        f"mmzoo train: {name} with {dist['strategy']}: {replicas} replica(s) on {dist['num_workers']} worker(s); "
        f"global batch {batch_size} = {dist['per_replica_batch_size']} per replica; "
        f"{steps_per_epoch} steps/epoch" + (f"; resuming at epoch {first_epoch + 1}" if first_epoch else ""),
    )

    nan_guard = _TerminateOnNaN()
    checkpoint = _EpochCheckpoint(os.path.join(write_dir, "checkpoints"), keep_all=bool(keep_checkpoints))
    history_path = os.path.join(write_dir, "history.csv")
    if first_epoch:
        _truncate_history(history_path, first_epoch)
    # Order matters: the epoch's logs are on disk before the backup says the
    # epoch is done, so a run killed at any moment resumes with a whole history.
    all_callbacks = [_EpochSeeds(), nan_guard, keras.callbacks.CSVLogger(history_path, append=first_epoch > 0)]
    if _tensorboard_installed():
        all_callbacks.append(keras.callbacks.TensorBoard(os.path.join(write_dir, "logs")))
    else:
        _log(verbose, "mmzoo train: TensorBoard logs skipped (pip install tensorboard to write OUT/logs).")
    all_callbacks += [checkpoint, _BackupAndRestore(backup_dir)]
    if early_stopping:
        all_callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss" if val_input is not None else "loss",
                patience=int(early_stopping),
                restore_best_weights=True,
            )
        )
    all_callbacks.extend(callbacks or ())

    start = time.perf_counter()
    history = model.fit(
        train_input,
        validation_data=val_input,
        epochs=int(epochs),
        steps_per_epoch=steps_per_epoch,
        callbacks=all_callbacks,
        verbose=verbose,
        shuffle=False,  # each epoch's order is fixed by (seed, epoch)
    )
    train_seconds = time.perf_counter() - start

    if nan_guard.where is not None:
        epoch, step, loss = nan_guard.where
        last = _last_checkpoint(os.path.join(write_dir, "checkpoints"))
        keep = f"The last good checkpoint is {last}." if last else "No epoch finished with a finite loss."
        raise TrainingDiverged(
            f"Training stopped: the loss became {loss} at epoch {epoch}, step {step}. {keep} "
            "Try a lower learning rate (--learning-rate), a warmup (--warmup-steps) or float32.",
            epoch=epoch, step=step, loss=loss, checkpoint=last,
        )

    model_path = os.path.join(write_dir, "model.keras")
    model.save(model_path)
    if not keep_checkpoints:  # model.keras is the run's model; nothing resumes from these
        shutil.rmtree(os.path.join(write_dir, "checkpoints"), ignore_errors=True)
    eval_model = model
    if isinstance(strat, tf.distribute.MultiWorkerMirroredStrategy):
        # Evaluate every example locally: a fresh copy outside the strategy
        # (the strategy would shard the evaluation data across workers).
        eval_model = keras.saving.load_model(model_path, safe_mode=True)
    metrics = evaluate_model(eval_model, val_records or records, batch_size=batch_size)
    losses = history.history.get("loss") or _csv_column(os.path.join(write_dir, "history.csv"), "loss")
    result = {
        "model": name,
        "task": model.task,
        "preset": preset or get_entry(name).default_preset,
        "evaluated_on": "val" if val_records else "train",
        "metrics": metrics,
        "final_loss": float(losses[-1]) if losses else None,
        "epochs": int(epochs),
        "initial_epoch": first_epoch,
        "epochs_run": len(history.history.get("loss", [])),
        "train_seconds": round(train_seconds, 2),
        "num_params": int(model.count_params()),
        "model_path": os.path.join(out_dir, "model.keras") if chief else None,
        "distribution": dist,
        "chance": chance_levels(model, val_records or records, records, metrics),
    }
    run_config = {
        "name": name,
        "data": os.path.abspath(data),
        "val_data": os.path.abspath(val_data) if val_data else None,
        "epochs": int(epochs),
        "batch_size": int(batch_size),
        "preset": preset,
        "out_dir": os.path.abspath(out_dir),
        "overrides": {k: v for k, v in (overrides or {}).items() if _jsonable(v)},
        "learning_rate": learning_rate,
        "seed": seed,
        "skip_bad": skip_bad,
        "verbose": verbose,
        "strategy": strategy,
        "tpu": tpu,
        "cpu_devices": cpu_devices,
        "mixed_precision": mixed_precision,
        "jit_compile": jit_compile,
        "steps_per_execution": int(steps_per_execution),
        "deterministic": bool(deterministic),
        "early_stopping": early_stopping,
        "lr_schedule": lr_schedule,
        "warmup_steps": int(warmup_steps or 0),
        "cache": cache,
        "keep_checkpoints": bool(keep_checkpoints),
        "resolved": {
            "images_in_memory": decoded_images is not None,
            "mmzoo_version": _version(),
            "preset": result["preset"],
            "learning_rate": base_lr,
            "steps_per_epoch": steps_per_epoch,
            "total_steps": total_steps,
            "num_examples": len(examples),
            "tokenizer": {
                "mode": model.tokenizer.mode,
                "vocabulary_size": int(model.tokenizer.vocabulary_size),
                "sequence_length": int(model.tokenizer.sequence_length),
            },
            "dropped_overrides": sorted(k for k, v in (overrides or {}).items() if not _jsonable(v)),
            **dist,
        },
    }
    with open(os.path.join(write_dir, "metrics.json"), "w") as f:
        json.dump(result, f, indent=2)
    with open(os.path.join(write_dir, "run_config.json"), "w") as f:
        json.dump(run_config, f, indent=2)
    if not chief:
        shutil.rmtree(write_dir, ignore_errors=True)
    return result


def _prepare_out_dir(out_dir, backup_dir, overwrite, chief, verbose):
    """Apply ``overwrite`` to what ``out_dir`` already holds (see ``train``)."""
    finished = os.path.exists(os.path.join(out_dir, "metrics.json"))
    resumable = backup_epoch(backup_dir) > 0
    if overwrite is False and finished and not resumable:
        raise RunExistsError(
            f"{out_dir} already holds a finished run ({_describe_run(out_dir)}). Pass --overwrite "
            "(overwrite=True) to train again from scratch, or a new --out (out_dir) to keep it."
        )
    if overwrite is True and resumable:
        _log(verbose, f"mmzoo train: --overwrite: discarding the unfinished run's backup in {backup_dir}")
        shutil.rmtree(backup_dir, ignore_errors=True)
        resumable = False
    if finished and not resumable:
        if overwrite is None:
            _log(verbose, f"mmzoo train: {out_dir} holds a finished run ({_describe_run(out_dir)}); "
                          "training again from scratch (overwrite=False refuses).")
        if chief:
            for name in RUN_OUTPUTS:
                path = os.path.join(out_dir, name)
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                elif os.path.exists(path):
                    os.remove(path)


def _describe_run(out_dir) -> str:
    try:
        with open(os.path.join(out_dir, "metrics.json")) as f:
            done = json.load(f)
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(os.path.getmtime(os.path.join(out_dir, "metrics.json"))))
        return f"{done.get('model')}, {done.get('epochs')} epochs, finished {when}"
    except (OSError, ValueError, AttributeError):
        return "metrics.json"


# ---------------------------------------------------------------- chance levels and the summary
def chance_levels(model, eval_records, train_records=None, metrics=None) -> dict:
    """What each headline metric is worth without learning: ``{"rule": str, "metrics": {name: value}}``.

    * classification: always answering the most common label of the
      evaluated records (accuracy, macro-F1; exact match for multi-label);
    * matching: a random ranking (recall@K of ``num_images`` images against
      ``num_texts`` captions);
    * captioning: the most common training caption, given for every image
      (BLEU, CIDEr-D, exact match), a reference rather than chance.
    """
    import collections

    task = getattr(model, "task", None)
    metrics = metrics or {}
    if task == "classification":
        labels = [r.label for r in eval_records if r.label is not None]
        if not labels:
            return {"rule": "no labels", "metrics": {}}
        if any(isinstance(label, (list, tuple)) for label in labels):
            sets = collections.Counter(tuple(sorted(label)) for label in labels)
            top, count = sets.most_common(1)[0]
            return {"rule": f"always the most common label set {list(top)}",
                    "metrics": {"exact_match": count / len(labels)}}
        counts = collections.Counter(str(label) for label in labels)
        top, count = counts.most_common(1)[0]
        p = count / len(labels)
        return {"rule": f"always the most common answer, {top!r}",
                "metrics": {"accuracy": p, "macro_f1": 2 * p / (1 + p) / len(counts)}}
    if task == "matching":
        images, texts = int(metrics.get("num_images") or 0), int(metrics.get("num_texts") or 0)
        if not images or not texts:
            return {"rule": "a random ranking", "metrics": {}}
        per_image = texts / images  # captions per image
        out = {}
        for k in (1, 5, 10):
            if f"image_to_text_recall@{k}" in metrics:
                # P(at least one of the image's captions among k random picks of all captions)
                miss = 1.0
                for j in range(min(k, texts)):
                    miss *= max(0.0, (texts - per_image - j) / (texts - j))
                out[f"image_to_text_recall@{k}"] = 1.0 - miss
            if f"text_to_image_recall@{k}" in metrics:
                out[f"text_to_image_recall@{k}"] = min(1.0, k / images)
        return {"rule": f"a random ranking of {images} images and {texts} captions", "metrics": out}
    if task == "captioning":
        train_captions = [c for r in (train_records or eval_records) for c in (r.captions or [])]
        evaluated = [r for r in eval_records if r.captions]
        if not train_captions or not evaluated:
            return {"rule": "no captions", "metrics": {}}
        from mmzoo.metrics.bleu import normalize_caption
        from mmzoo.metrics.captioning import caption_scores

        top = collections.Counter(normalize_caption(c) for c in train_captions).most_common(1)[0][0]
        scores = caption_scores([r.captions for r in evaluated], [top] * len(evaluated))
        return {"rule": f"the most common training caption, {top!r}, for every image",
                "metrics": {k: float(v) for k, v in scores.items()}}
    return {"rule": "", "metrics": {}}


HEADLINE_METRICS = (
    "accuracy", "macro_f1", "micro_f1", "image_to_text_recall@1", "image_to_text_recall@5",
    "text_to_image_recall@1", "text_to_image_recall@5", "bleu_4", "cider_d", "exact_match",
)


def metric_lines(metrics: dict, chance: dict | None = None, indent: str = "  ") -> list[str]:
    """One line per headline metric, with its chance level (``chance_levels``) beside it."""
    chance = chance or {}
    values = chance.get("metrics", {})
    keys = [k for k in HEADLINE_METRICS if k in metrics] or [k for k, v in metrics.items()
                                                             if isinstance(v, float) and not k.startswith("num_")]
    width = max((len(k) for k in keys), default=0)
    lines = []
    for i, key in enumerate(keys):
        line = f"{indent}{key:<{width}}  {metrics[key]:.3f}"
        if key in values:
            line += f"   chance {values[key]:.3f}"
            if i == 0 and chance.get("rule"):
                line += f" ({chance['rule']})"
        lines.append(line)
    return lines


def format_result(result: dict, data: str | None = None) -> str:
    """``train``'s result as the few lines ``mmzoo train`` prints (``--json`` prints the dict)."""
    lines = [
        f"mmzoo train: {result['model']} (preset {result['preset']}) trained {result['epochs_run']} epoch(s)"
        + (f" after resuming at epoch {result['initial_epoch'] + 1}" if result.get("initial_epoch") else "")
        + f" in {result['train_seconds']:.1f} s; final loss {result['final_loss']:.4f}; "
          f"{result['num_params']:,} parameters"
    ]
    metrics = result.get("metrics", {})
    count = metrics.get("num_examples") or metrics.get("num_images")
    where = "the validation data" if result.get("evaluated_on") == "val" else \
        "the training data (no --val-data: these figures flatter the model)"
    lines.append(f"evaluated on {where}" + (f", {int(count)} examples" if count else "") + ":")
    lines.extend(metric_lines(metrics, result.get("chance"), indent="  "))
    model_path = result.get("model_path")
    if model_path:
        out_dir = os.path.dirname(model_path)
        written = [n for n in ("model.keras", "metrics.json", "history.csv", "run_config.json")
                   if os.path.exists(os.path.join(out_dir, n))]
        if os.path.isdir(os.path.join(out_dir, "logs")):
            written.append("logs/ (TensorBoard)")
        if os.path.isdir(os.path.join(out_dir, "checkpoints")):
            written.append("checkpoints/")
        lines.append(f"wrote {out_dir}{os.sep}: " + ", ".join(written))
        if not os.path.isdir(os.path.join(out_dir, "logs")):
            lines.append("no TensorBoard logs: pip install tensorboard to write OUT/logs")
        lines.append(f"next: mmzoo evaluate {model_path} --data {data or 'MANIFEST'}  |  "
                     f"mmzoo export {model_path}  (as {os.path.basename(out_dir)})")
    return "\n".join(lines)


def _truncate_history(path, first_epoch):
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


def _tensorboard_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def _last_checkpoint(directory):
    if not os.path.isdir(directory):
        return None
    names = sorted(n for n in os.listdir(directory) if n.startswith("epoch_") and n.endswith(".keras"))
    return os.path.join(directory, names[-1]) if names else None


def _csv_column(path, column):
    import csv

    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [float(row[column]) for row in csv.DictReader(f) if row.get(column) not in (None, "")]


def _version():
    from mmzoo.version import __version__

    return __version__
