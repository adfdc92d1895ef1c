"""Tests for mmzoo/training/callbacks.py: each callback on a small Keras model, then in a run."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from mmzoo.training import TrainingDiverged, backup_epoch, train
from mmzoo.training.callbacks import (
    BackupAndRestore,
    EpochCheckpoint,
    EpochSeeds,
    TerminateOnNaN,
    last_checkpoint,
)
from tests.processes import sigkill_when
from tests.training.runs import TINY, AtEpoch, Interrupt, assert_same_weights, history, weights

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _small_model():
    inputs = keras.Input((4,))
    hidden = keras.layers.Dropout(0.5, seed=3)(keras.layers.Dense(8, activation="relu")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1)(hidden))
    model.compile(optimizer="sgd", loss="mse")
    return model


def _data(n=16):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 4)).astype("float32"), rng.normal(size=(n, 1)).astype("float32")


# ------------------------------------------------------------------ each callback alone
@pytest.mark.parametrize("keep_all, kept", [(False, ["epoch_003.keras"]),
                                            (True, ["epoch_001.keras", "epoch_002.keras", "epoch_003.keras"])])
def test_epoch_checkpoint_keeps_the_latest_or_all(tmp_path, keep_all, kept):
    x, y = _data()
    checkpoint = EpochCheckpoint(str(tmp_path), keep_all=keep_all)
    _small_model().fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[checkpoint])
    assert sorted(os.listdir(tmp_path)) == kept
    assert checkpoint.last_path == str(tmp_path / "epoch_003.keras") == last_checkpoint(str(tmp_path))
    assert last_checkpoint(str(tmp_path / "none")) is None


def _interrupted_backup(tmp_path, at=0):
    """A 3-epoch fit of the small model interrupted after epoch ``at`` (0-based): ``(backup dir,
    its metadata file, its weights file)``."""
    x, y = _data()
    backup = str(tmp_path / "backup")
    with pytest.raises(KeyboardInterrupt):
        _small_model().fit(x, y, epochs=3, batch_size=8, verbose=0,
                           callbacks=[BackupAndRestore(backup), Interrupt(at=at)])
    return backup, os.path.join(backup, "training_metadata.json"), os.path.join(backup, f"epoch_{at + 1}.weights.h5")


def test_backup_and_restore_resumes_after_the_last_backed_up_epoch(tmp_path):
    x, y = _data()
    backup, _, _ = _interrupted_backup(tmp_path, at=1)
    assert backup_epoch(backup) == 2
    with open(os.path.join(backup, "training_metadata.json")) as f:
        meta = json.load(f)
    # The metadata names the one weights file there; no temporary file is left.
    assert sorted(os.listdir(backup)) == ["epoch_2.weights.h5", "training_metadata.json"] and meta["epoch"] == 2
    resumed = _small_model().fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[BackupAndRestore(backup)])
    assert len(resumed.history["loss"]) == 1  # only epoch 3 was left
    assert backup_epoch(backup) == 0 and not os.path.exists(backup)  # removed when training finished
    assert backup_epoch(str(tmp_path / "never")) == 0


@pytest.mark.parametrize("damage, reason", [
    ('{"epoch": 1, "weights": "epo', "JSONDecodeError: Unterminated string"),
    ("", "JSONDecodeError: Expecting value"),
    ('{"weights": "epoch_1.weights.h5"}', "KeyError"),
    ('{"epoch": "one", "weights": "epoch_1.weights.h5"}', "ValueError: invalid literal"),
    ('{"epoch": 1, "weights": "../elsewhere.weights.h5"}', "weights='../elsewhere.weights.h5'"),
    ('["epoch", 1]', "TypeError"),
], ids=["truncated", "empty", "no-epoch", "bad-epoch", "outside", "not-a-dict"])
def test_damaged_backup_metadata_names_the_file_and_the_way_out(tmp_path, damage, reason):
    from mmzoo.training import ResumeError

    backup, meta, _ = _interrupted_backup(tmp_path)
    with open(meta, "w") as f:
        f.write(damage)
    with pytest.raises(ResumeError, match=reason) as info:
        backup_epoch(backup)
    message = str(info.value)
    assert message.startswith(f"Cannot resume the unfinished run from {meta}: the file is damaged")
    assert "Start over with --overwrite (overwrite=True), or delete " + backup in message
    assert "\n" not in message


@pytest.mark.parametrize("damage", ["truncated", "missing", "other-model", "unnamed"])
def test_damaged_backup_weights_name_the_file(tmp_path, damage):
    from mmzoo.training import ResumeError

    backup, _, weights_file = _interrupted_backup(tmp_path)
    model = _small_model()
    if damage == "truncated":
        with open(weights_file, "r+b") as f:
            f.truncate(os.path.getsize(weights_file) // 2)
    elif damage == "missing":
        os.remove(weights_file)
    elif damage == "unnamed":
        meta = os.path.join(backup, "training_metadata.json")
        with open(meta, "w") as f:
            json.dump({"epoch": 1}, f)
        weights_file = meta
    else:
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
    x, y = _data()
    expected = {"missing": "the file is missing", "unnamed": "it names no weights file"}.get(
        damage, "it does not load into this model")
    with pytest.raises(ResumeError, match=expected) as info:
        model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[BackupAndRestore(backup)])
    assert str(info.value).startswith(f"Cannot resume the unfinished run from {weights_file}: ")
    assert "--overwrite" in str(info.value) and "\n" not in str(info.value)


def test_a_damaged_backup_refuses_a_run_unless_overwrite(manifest, tmp_path):
    from mmzoo.training import ResumeError

    kwargs = dict(epochs=2, out_dir=str(tmp_path), **TINY)
    with pytest.raises(KeyboardInterrupt):
        train("concat_classifier", manifest, callbacks=[Interrupt(at=0)], **kwargs)
    with open(tmp_path / "backup" / "training_metadata.json", "w") as f:
        f.write('{"epoch": 1, "weigh')
    with pytest.raises(ResumeError, match="training_metadata.json: the file is damaged"):
        train("concat_classifier", manifest, **kwargs)
    result = train("concat_classifier", manifest, overwrite=True, **kwargs)
    assert result["initial_epoch"] == 0 and result["epochs_run"] == 2


def test_terminate_on_nan_remembers_where_and_keeps_the_backup(tmp_path):
    x, y = _data()
    y[9] = np.nan  # a target in the second batch of 8
    guard, backup = TerminateOnNaN(), str(tmp_path / "backup")
    model = _small_model()
    fitted = model.fit(x, y, epochs=3, batch_size=8, verbose=0, shuffle=False, callbacks=[guard, BackupAndRestore(backup)])
    assert guard.where is not None and guard.where[:2] == (1, 2) and np.isnan(guard.where[2])
    assert model._mmzoo_diverged == guard.where
    assert len(fitted.history["loss"]) == 1  # stopped in the first epoch
    assert backup_epoch(backup) == 0  # a non-finite epoch is not backed up


def test_epoch_seeds_depend_on_the_epoch_alone():
    model = _small_model()
    seeds = EpochSeeds()
    seeds.set_model(model)
    seeds.on_train_begin()
    assert len(seeds._generators) == 1  # the dropout's
    generator, base = seeds._generators[0]
    states = []
    for epoch in (0, 1, 0):
        seeds.on_epoch_begin(epoch)
        states.append(list(np.asarray(generator.state)))
    assert states[0] == states[2] != states[1]
    assert states[1] == [EpochSeeds.seed_for(base, 1), 0]
    assert EpochSeeds.seed_for(5, 0) == 5 + 1_000_003


# ------------------------------------------------------------------ in a run
class _PoisonWeights(AtEpoch):
    """Sets one kernel to NaN at the start of epoch ``at`` (0-based)."""

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at:
            kernel = self.model.get_layer("scores").logits.kernel
            kernel.assign(np.full(kernel.shape, np.nan, "float32"))


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(manifest, tmp_path):
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 2, step 1") as info:
        train("gated_classifier", manifest, epochs=3, out_dir=str(tmp_path), callbacks=[_PoisonWeights(1)], **TINY)
    error = info.value
    assert (error.epoch, error.step) == (2, 1)
    last_good = str(tmp_path / "checkpoints" / "epoch_001.keras")
    assert error.checkpoint == last_good and last_good in str(error)
    assert os.listdir(tmp_path / "checkpoints") == ["epoch_001.keras"]
    assert backup_epoch(str(tmp_path / "backup")) == 1, "the backup of the last good epoch is kept"
    assert not os.path.exists(tmp_path / "model.keras")
    good = weights(last_good)
    assert all(np.isfinite(w).all() for w in good)


# ------------------------------------------------------------------ SIGKILL and resume (subprocess)
def _train_command(manifest, out):
    return [
        sys.executable, "-m", "mmzoo.cli", "train", "gated_classifier", "--data", manifest, "--preset", "tiny",
        "--set", "image_size=[32,32]", "--epochs", "3", "--batch-size", "8", "--out", out,
        "--deterministic", "--seed", "2", "--quiet", "--json",
    ]


def _env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1", KERAS_BACKEND="tensorflow")
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _last_json(stdout):
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_sigkill_and_rerun_resumes_with_the_same_result(manifest, tmp_path):
    reference, killed = str(tmp_path / "reference"), str(tmp_path / "killed")
    done = subprocess.run(_train_command(manifest, reference), env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = _last_json(done.stdout)

    proc = subprocess.Popen(
        _train_command(manifest, killed), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    sigkill_when(
        proc,
        lambda: backup_epoch(os.path.join(killed, "backup")) >= 1,
        timeout=240,
        ended_early=lambda: "the run ended before its first backup",
        too_late="no backup after 240 s",
    )
    assert not os.path.exists(os.path.join(killed, "metrics.json"))
    stopped_at = backup_epoch(os.path.join(killed, "backup"))
    assert stopped_at in (1, 2)

    rerun = subprocess.run(_train_command(manifest, killed), env=_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    result = _last_json(rerun.stdout)
    assert f"resuming at epoch {stopped_at + 1}" in rerun.stdout
    assert result["initial_epoch"] == stopped_at and result["epochs_run"] == 3 - stopped_at
    assert result["final_loss"] == pytest.approx(expected["final_loss"], rel=1e-6)
    assert result["metrics"] == expected["metrics"]
    assert history(killed) == history(reference)
    assert_same_weights(os.path.join(reference, "model.keras"), os.path.join(killed, "model.keras"))
