"""The Keras callbacks a run adds to ``fit``, and what reads their files.

* ``BackupAndRestore``: the ``backup/`` a killed run resumes from;
* ``EpochCheckpoint``: ``checkpoints/epoch_NNN.keras`` after each good epoch;
* ``TerminateOnNaN``: stops at a NaN/inf loss and remembers where;
* ``EpochSeeds``: dropout draws that depend on the epoch alone (exact resumption);
* ``UnfreezeTowers``: fine-tunes the keras_hub towers' top layers after some
  epochs, at a lower learning rate (``recompile_with_scaled_lr``).

``BackupAndRestore`` overrides the private hooks ``_save_model`` and
``_load_model`` of ``keras.callbacks.BackupAndRestore`` (Keras 3.14-3.15);
``EpochSeeds`` reads ``Layer._seed_generators``. ``tests/training/test_callbacks.py``
exercises both on the installed Keras.
"""

from __future__ import annotations

import importlib.util
import json
import os
import zipfile

import keras
import numpy as np

from mmzoo.errors import error_text
from mmzoo.files import write_then_rename
from mmzoo.towers.keras_hub_tuning import keras_hub_backbones, lora_state, restore_lora_state, unfreeze_top
from mmzoo.training import keras_compat


def finite(logs) -> bool:
    """Whether the epoch or batch ``logs`` hold a finite loss (no loss counts as finite)."""
    loss = (logs or {}).get("loss")
    return loss is None or bool(np.isfinite(loss))


def tensorboard_installed() -> bool:
    """Whether ``keras.callbacks.TensorBoard`` can write logs (the ``tensorboard`` package)."""
    return importlib.util.find_spec("tensorboard") is not None


class ResumeError(ValueError):
    """An unfinished run's backup cannot be read or loaded; the message names the file."""


def _cannot_resume(path, reason) -> ResumeError:
    return ResumeError(
        f"Cannot resume the unfinished run from {path}: {reason}. Start over with --overwrite "
        f"(overwrite=True), or delete {os.path.dirname(path)}."
    )


def read_backup_metadata(backup_dir: str) -> dict | None:
    """``{"epoch", "batch", "weights"}`` of the backup in ``backup_dir`` (``None`` when there is
    none); a damaged ``training_metadata.json`` raises ``ResumeError`` naming it."""
    path = os.path.join(backup_dir, "training_metadata.json")
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
        epoch, weights = int(meta["epoch"]), meta.get("weights")
    except (ValueError, KeyError, TypeError, AttributeError) as e:  # JSONDecodeError is a ValueError
        raise _cannot_resume(path, f"the file is damaged ({type(e).__name__}: {e})") from None
    lora = meta.get("lora")
    if epoch < 0 or not all(name is None or (isinstance(name, str) and os.path.basename(name) == name)
                            for name in (weights, lora)):
        raise _cannot_resume(path, f"the file is damaged (epoch={epoch!r}, weights={weights!r}, lora={lora!r})")
    return {**meta, "epoch": epoch, "weights": weights}


def backup_epoch(backup_dir: str) -> int:
    """The epoch a run resumes at from ``backup_dir`` (0 when there is no backup;
    ``ResumeError`` when its metadata is damaged)."""
    meta = read_backup_metadata(backup_dir)
    return 0 if meta is None else meta["epoch"]


def write_json(path, value):
    """``value`` as indented JSON at ``path`` (the run directory's files, the backup's metadata)."""
    with open(path, "w") as f:
        json.dump(value, f, indent=2)


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` whose backup survives a SIGKILL at any moment.

    Each epoch writes ``epoch_N.weights.h5`` (temporary file, then renamed;
    with LoRA adapters also ``epoch_N.lora.npz``, which ``save_weights``
    would merge into the kernels) and only then points
    ``training_metadata.json`` at it (atomic rename), so
    the metadata never names half-written or newer weights. Epochs that end
    with a non-finite loss are not backed up, and the backup is kept when
    training diverged (``TerminateOnNaN`` marks the model). ``backup_epoch``
    reads the epoch a run resumes at.
    """

    def _load_model(self):
        meta = read_backup_metadata(self.backup_dir)
        if meta is None:
            return
        if meta["weights"] is None:
            raise _cannot_resume(self._training_metadata_path, "the file is damaged (it names no weights file)")
        weights = os.path.join(self.backup_dir, meta["weights"])
        if not os.path.isfile(weights):
            raise _cannot_resume(weights, "the file is missing (training_metadata.json names it)")
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        for path, load in ((weights, self.model.load_weights), (meta.get("lora"), self._load_lora)):
            if path is None:
                continue
            path = os.path.join(self.backup_dir, path)
            try:
                load(path)
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:  # h5py: OSError when truncated
                reason = error_text(e) or type(e).__name__
                raise _cannot_resume(path, f"it does not load into this model ({reason}); the file is damaged "
                                           "or the run's settings changed") from None
        self.model._initial_epoch = meta["epoch"]

    def _load_lora(self, path):
        """The adapters and unmerged kernels as they were (``load_weights`` zeroed the adapters)."""
        with np.load(path) as arrays:
            restore_lora_state(self.model, {str(p): arrays[f"arr_{i}"] for i, p in enumerate(arrays["paths"])})

    def on_epoch_end(self, epoch, logs=None):
        if finite(logs):
            super().on_epoch_end(epoch, logs)

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        name = f"epoch_{self._current_epoch}.weights.h5"
        write_then_rename(os.path.join(self.backup_dir, name),
                          lambda tmp: self.model.save_weights(tmp, overwrite=True), suffix=".tmp.weights.h5")
        lora_name = self._save_lora(f"epoch_{self._current_epoch}.lora.npz")
        meta = {"epoch": self._current_epoch, "batch": self._last_batch_seen, "weights": name, "lora": lora_name}
        write_then_rename(self._training_metadata_path, lambda tmp: write_json(tmp, meta))
        for other in os.listdir(self.backup_dir):
            if other.endswith((".weights.h5", ".lora.npz")) and other not in (name, lora_name):
                os.remove(os.path.join(self.backup_dir, other))

    def _save_lora(self, name):
        """Write the LoRA adapters and unmerged kernels (``save_weights`` merges them) as ``name``;
        ``None`` for a model without LoRA layers."""
        state = lora_state(self.model)
        if not state:
            return None
        # The temporary name ends in .lora.npz too: np.savez keeps it, and the next epoch's backup removes it
        # if a kill left it behind (as the .tmp.weights.h5 ones).
        write_then_rename(os.path.join(self.backup_dir, name),
                          lambda tmp: np.savez(tmp, *state.values(), paths=np.array(list(state))),
                          suffix=".tmp.lora.npz")
        return name

    def on_train_end(self, logs=None):
        if not getattr(self.model, "_mmzoo_diverged", None):
            super().on_train_end(logs)


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves ``checkpoints/epoch_NNN.keras`` after every epoch with a finite loss.

    With ``keep_all=False`` only the latest is kept (the one a diverged run
    points at): each save removes the earlier ones. ``last_path`` is the
    latest file written.
    """

    def __init__(self, directory, keep_all=True):
        super().__init__()
        self.directory = directory
        self.keep_all = keep_all
        self.last_path = None

    def on_epoch_end(self, epoch, logs=None):
        if not finite(logs):
            return
        os.makedirs(self.directory, exist_ok=True)
        name = f"epoch_{epoch + 1:03d}.keras"
        path = os.path.join(self.directory, name)
        write_then_rename(path, self.model.save, suffix=".tmp.keras")
        self.last_path = path
        if not self.keep_all:
            for other in os.listdir(self.directory):
                if other.startswith("epoch_") and other.endswith(".keras") and other != name:
                    os.remove(os.path.join(self.directory, other))


def last_checkpoint(directory):
    """The latest ``epoch_NNN.keras`` in ``directory`` (``EpochCheckpoint``'s), or ``None``."""
    if not os.path.isdir(directory):
        return None
    names = sorted(n for n in os.listdir(directory) if n.startswith("epoch_") and n.endswith(".keras"))
    return os.path.join(directory, names[-1]) if names else None


class TerminateOnNaN(keras.callbacks.TerminateOnNaN):
    """``TerminateOnNaN`` that remembers where the loss went bad.

    ``where`` is ``(epoch, step, loss)`` (1-based) of the first non-finite
    batch loss, else ``None``; the model is marked (``_mmzoo_diverged``) so
    ``BackupAndRestore`` keeps its backup. Training stops without raising:
    the run raises ``TrainingDiverged`` after ``fit`` returns.
    """

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


class EpochSeeds(keras.callbacks.Callback):
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
            generator.state.assign(np.asarray([self.seed_for(base, epoch), 0], dtype=generator.state.dtype))

    @staticmethod
    def seed_for(base: int, epoch: int) -> int:
        """The seed a generator built with seed ``base`` starts epoch ``epoch`` (0-based) with."""
        return (base + 1_000_003 * (epoch + 1)) % (2**31 - 1)


def _scaled_learning_rate(optimizer, factor: float):
    """The optimizer's learning rate (a float, or the run's ``CosineDecay``-style schedule) times ``factor``."""
    rate = optimizer._learning_rate
    if not isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
        return float(keras.ops.convert_to_numpy(rate)) * factor
    config = rate.get_config()
    keys = [k for k in ("initial_learning_rate", "warmup_target") if config.get(k) is not None]
    if not keys:
        raise ValueError(f"UnfreezeTowers cannot scale a {type(rate).__name__} learning-rate schedule.")
    config.update({k: float(config[k]) * factor for k in keys})
    return type(rate).from_config(config)


def recompile_with_scaled_lr(model, factor: float) -> None:
    """Recompile ``model`` as its ``trainable`` flags now say, with a fresh optimizer at ``factor`` times the rate.

    Keras fixes the trainable variables at ``compile`` (and the optimizer's
    slots at its build), so a changed ``trainable`` needs a new compile; the
    new optimizer keeps the other settings and the step count (a schedule
    goes on where it was), is built over the new trainable variables (so a
    backup written later loads into a resumed run), and the train function
    is made again for the ``fit`` that is running.
    """
    inner = getattr(model.optimizer, "inner_optimizer", model.optimizer)  # LossScaleOptimizer under mixed_float16
    config = inner.get_config()
    config["learning_rate"] = _scaled_learning_rate(inner, factor)
    optimizer = type(inner).from_config(config)
    compiled = model._compile_config.config
    keras_compat.compile_forcing_jit(
        model,
        model.jit_compile,
        optimizer=optimizer,
        loss=compiled.get("loss"),
        metrics=compiled.get("metrics"),
        loss_weights=compiled.get("loss_weights"),
        weighted_metrics=compiled.get("weighted_metrics"),
        run_eagerly=model.run_eagerly,
        steps_per_execution=model.steps_per_execution,
    )
    optimizer.iterations.assign(inner.iterations)
    model.optimizer.build(model.trainable_variables)
    model.make_train_function(force=True)


class UnfreezeTowers(keras.callbacks.Callback):
    """Fine-tunes the keras-hub backbones of the model from epoch ``after_epochs`` on.

    At the start of that epoch (0-based: ``after_epochs=2`` trains the
    frozen-tower model for 2 epochs first) the top ``top_layers``
    transformer layers of every keras-hub backbone in the model become
    trainable, with the layers after them (final norm, pooler; all layers
    when ``top_layers`` is None; see ``mmzoo.towers.keras_hub_tuning.unfreeze_top``),
    the learning rate is multiplied by ``learning_rate_factor`` and the
    model is recompiled (``recompile_with_scaled_lr``; the new optimizer
    starts with empty slots and the step count so far). A run resumed after
    that epoch (``resume_epoch``, its first epoch, ``> after_epochs``) was
    backed up unfrozen: it unfreezes at train begin, before
    ``BackupAndRestore`` (listed after this callback) loads the backup, so
    the backup's optimizer slots match. A run resumed *at* that epoch was
    backed up frozen: it loads the backup frozen and unfreezes at the epoch's
    start, as the uninterrupted run did.
    """

    def __init__(self, after_epochs: int, top_layers: int | None = None, learning_rate_factor: float = 0.1,
                 resume_epoch: int = 0):
        super().__init__()
        if isinstance(after_epochs, bool) or int(after_epochs) < 0:
            raise ValueError(f"after_epochs must be >= 0. Received: after_epochs={after_epochs!r}")
        if top_layers is not None and (isinstance(top_layers, bool) or int(top_layers) < 1):
            raise ValueError(f"top_layers must be positive or None (all). Received: top_layers={top_layers!r}")
        if not 0 < float(learning_rate_factor) <= 1:
            raise ValueError(
                f"learning_rate_factor must be in (0, 1]. Received: learning_rate_factor={learning_rate_factor!r}"
            )
        self.after_epochs = int(after_epochs)
        self.top_layers = None if top_layers is None else int(top_layers)
        self.learning_rate_factor = float(learning_rate_factor)
        self.resume_epoch = int(resume_epoch)
        self.unfrozen_at = None

    def on_train_begin(self, logs=None):
        if self.unfrozen_at is None and self.resume_epoch > self.after_epochs:
            self._unfreeze(self.resume_epoch)

    def on_epoch_begin(self, epoch, logs=None):
        if self.unfrozen_at is None and epoch >= self.after_epochs:
            self._unfreeze(epoch)

    def _unfreeze(self, epoch):
        backbones = keras_hub_backbones(self.model)
        if not backbones:
            raise ValueError("UnfreezeTowers found no keras_hub tower (text_tower or image_tower='keras_hub').")
        for backbone in backbones:
            unfreeze_top(backbone, self.top_layers)
        recompile_with_scaled_lr(self.model, self.learning_rate_factor)
        self.unfrozen_at = epoch
