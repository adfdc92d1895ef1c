"""Tests for mmzoo/training.py (and the `mmzoo train` command line)."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from mmzoo.cli import build_parser
from mmzoo.training import (
    TrainingDiverged,
    backup_epoch,
    cli_options,
    load_run_config,
    make_lr_schedule,
    merge_overrides,
    parse_overrides,
    train,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {"preset": "tiny", "overrides": {"image_size": [32, 32]}, "batch_size": 8, "verbose": 0}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    from mmzoo.data import generate_shapes_dataset

    return generate_shapes_dataset(str(tmp_path_factory.mktemp("shapes")), num_images=16, image_size=32)


def _weights(path):
    import mmzoo.models  # noqa: F401  (registers the zoo classes for loading)

    model = keras.saving.load_model(path, safe_mode=True)
    return [np.asarray(w) for w in model.get_weights()]


def _history(out_dir):
    with open(os.path.join(out_dir, "history.csv")) as f:
        return f.read().strip().splitlines()


# ------------------------------------------------------------------ overrides and configs
def test_parse_overrides_types_and_nesting():
    out = parse_overrides(
        ["dropout=0.25", "fusion=gated", "image_tower_kwargs.filters=[8,16]", "image_tower_kwargs.dim=32",
         "learn=true", "name=a=b", "x=null"]
    )
    assert out == {
        "dropout": 0.25,
        "fusion": "gated",
        "image_tower_kwargs": {"filters": [8, 16], "dim": 32},
        "learn": True,
        "name": "a=b",
        "x": None,
    }


@pytest.mark.parametrize("bad", ["novalue", "=3", "a..b=1"])
def test_parse_overrides_errors(bad):
    with pytest.raises(ValueError, match="Received"):
        parse_overrides([bad])


def test_parse_overrides_conflict():
    with pytest.raises(ValueError, match="conflicts"):
        parse_overrides(["a=1", "a.b=2"])


def test_merge_overrides_is_deep():
    merged = merge_overrides({"a": {"x": 1, "y": 2}, "b": 1}, {"a": {"y": 3}, "c": 4})
    assert merged == {"a": {"x": 1, "y": 3}, "b": 1, "c": 4}


def test_load_run_config_json_and_yaml(tmp_path):
    config = {
        "name": "gated_classifier", "data": "train.jsonl", "out": "runs/x", "batch-size": 16,
        "set": ["dropout=0.1", "image_tower_kwargs.dim=8"], "overrides": {"image_size": [32, 32]},
        "strategy": "mirrored", "resolved": {"anything": 1},
    }
    expected = {
        "name": "gated_classifier", "data": "train.jsonl", "out_dir": "runs/x", "batch_size": 16,
        "overrides": {"image_size": [32, 32], "dropout": 0.1, "image_tower_kwargs": {"dim": 8}},
        "strategy": "mirrored",
    }
    json_path = tmp_path / "run.json"
    json_path.write_text(json.dumps(config))
    assert load_run_config(str(json_path)) == expected

    import yaml

    yaml_path = tmp_path / "run.yaml"
    yaml_path.write_text(yaml.safe_dump(config))
    assert load_run_config(str(yaml_path)) == expected


def test_load_run_config_errors(tmp_path):
    with pytest.raises(ValueError, match="Unknown run config key 'epoch'"):
        load_run_config({"epoch": 3})
    with pytest.raises(FileNotFoundError):
        load_run_config(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_run_config(str(bad))


def test_cli_flags_override_config_file(tmp_path):
    config = tmp_path / "run.json"
    config.write_text(json.dumps({
        "name": "gated_classifier", "data": "a.jsonl", "epochs": 7, "seed": 3,
        "set": ["dropout=0.1", "fusion_kwargs.units=8"],
    }))
    args = build_parser().parse_args(
        ["train", "--config", str(config), "--epochs", "2", "--set", "dropout=0.3", "--strategy", "mirrored",
         "--out", "o", "--no-jit-compile", "--quiet"]
    )
    options = cli_options(args)
    assert options == {
        "name": "gated_classifier", "data": "a.jsonl", "epochs": 2, "seed": 3, "strategy": "mirrored",
        "out_dir": "o", "jit_compile": False, "verbose": 2,
        "overrides": {"dropout": 0.3, "fusion_kwargs": {"units": 8}},
    }
    # Flags not given stay unset, so train()'s defaults apply.
    plain = cli_options(build_parser().parse_args(["train", "gated_classifier", "--data", "d.jsonl"]))
    assert plain == {"name": "gated_classifier", "data": "d.jsonl"}
    with pytest.raises(ValueError, match="needs a model NAME and --data"):
        cli_options(build_parser().parse_args(["train", "gated_classifier"]))


# ------------------------------------------------------------------ learning-rate schedules
def test_cosine_schedule_with_warmup_values():
    schedule = make_lr_schedule("cosine", 1e-3, total_steps=110, warmup_steps=10)
    values = [float(schedule(step)) for step in (0, 5, 10, 60, 110, 200)]
    np.testing.assert_allclose(values, [0.0, 5e-4, 1e-3, 5e-4, 0.0, 0.0], atol=1e-9)
    # Monotone decay after the warmup.
    decay = [float(schedule(s)) for s in range(10, 111, 10)]
    assert all(a >= b for a, b in zip(decay, decay[1:]))


def test_constant_schedule_with_and_without_warmup():
    assert make_lr_schedule("constant", 3e-4, total_steps=50) == pytest.approx(3e-4)
    schedule = make_lr_schedule("constant", 3e-4, total_steps=50, warmup_steps=4)
    values = [float(schedule(step)) for step in (0, 2, 4, 30, 50)]
    np.testing.assert_allclose(values, [0.0, 1.5e-4, 3e-4, 3e-4, 3e-4], rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kind": "step"}, "lr_schedule must be one of"),
        ({"learning_rate": -1.0}, "learning_rate must be positive"),
        ({"warmup_steps": -2}, "warmup_steps must be >= 0"),
        ({"warmup_steps": 100}, "smaller than the run's total steps"),
    ],
)
def test_schedule_errors(kwargs, message):
    args = {"kind": "cosine", "learning_rate": 1e-3, "total_steps": 100, "warmup_steps": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        make_lr_schedule(**args)


def test_train_argument_errors(manifest, tmp_path):
    with pytest.raises(ValueError, match="epochs must be positive"):
        train("gated_classifier", manifest, epochs=0, out_dir=str(tmp_path))
    with pytest.raises(ValueError, match="mixed_precision must be one of"):
        train("gated_classifier", manifest, mixed_precision="fp8", out_dir=str(tmp_path))
    with pytest.raises(ValueError, match="strategy must be one of"):
        train("gated_classifier", manifest, strategy="horovod", out_dir=str(tmp_path), **TINY)
    with pytest.raises(ValueError, match="needs TF_CONFIG"):
        train("gated_classifier", manifest, strategy="multi_worker", out_dir=str(tmp_path), **TINY)
    with pytest.raises(ValueError, match=r"cache must be one of \['auto', 'memory', 'none'\]. Received: cache='disk'"):
        train("gated_classifier", manifest, cache="disk", out_dir=str(tmp_path), **TINY)


# ------------------------------------------------------------------ a run, its outputs, its config
class _Interrupt(keras.callbacks.Callback):
    """Stops a run with an exception at the end of epoch ``at`` (after the backup is written)."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at:
            raise KeyboardInterrupt(f"interrupted after epoch {epoch + 1}")


@pytest.fixture(scope="module")
def reference_run(manifest, tmp_path_factory):
    """An uninterrupted 2-epoch deterministic run with a cosine schedule and warmup."""
    out = str(tmp_path_factory.mktemp("reference"))
    result = train(
        "gated_classifier", manifest, epochs=2, out_dir=out, seed=1, deterministic=True,
        lr_schedule="cosine", warmup_steps=1, early_stopping=5, **TINY
    )
    keras.backend.clear_session()
    return out, result


def test_run_writes_every_output(reference_run):
    out, result = reference_run
    for name in ("model.keras", "metrics.json", "history.csv", "run_config.json"):
        assert os.path.isfile(os.path.join(out, name)), name
    assert not os.path.exists(os.path.join(out, "checkpoints")), "by default no checkpoint outlives the run"
    assert os.listdir(os.path.join(out, "logs")), "no TensorBoard logs"
    assert not os.path.exists(os.path.join(out, "backup")), "the backup is deleted after a finished run"
    assert len(_history(out)) == 3  # header + 2 epochs
    assert result["distribution"]["num_replicas"] == 1
    assert result["distribution"]["global_batch_size"] == 8
    assert result["distribution"]["per_replica_batch_size"] == 8
    assert result["initial_epoch"] == 0 and result["epochs_run"] == 2
    assert np.isfinite(result["final_loss"])
    with open(os.path.join(out, "metrics.json")) as f:
        assert json.load(f)["metrics"] == result["metrics"]
    with open(os.path.join(out, "run_config.json")) as f:
        saved = json.load(f)
    assert saved["lr_schedule"] == "cosine" and saved["warmup_steps"] == 1
    assert saved["resolved"]["steps_per_epoch"] == 2 and saved["resolved"]["total_steps"] == 4


def test_images_decoded_once_train_the_same_model_as_decoding_every_epoch(reference_run, manifest, tmp_path):
    out, result = reference_run  # cache="auto": these few images are kept in memory
    with open(os.path.join(out, "run_config.json")) as f:
        assert json.load(f)["cache"] == "auto"
    again = train(
        "gated_classifier", manifest, epochs=2, out_dir=str(tmp_path), seed=1, deterministic=True,
        lr_schedule="cosine", warmup_steps=1, early_stopping=5, cache="none", **TINY
    )
    assert again["final_loss"] == pytest.approx(result["final_loss"], rel=1e-6)
    for a, b in zip(_weights(os.path.join(out, "model.keras")), _weights(str(tmp_path / "model.keras"))):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_run_config_repeats_the_run(reference_run, tmp_path):
    out, result = reference_run
    options = load_run_config(os.path.join(out, "run_config.json"))
    assert options["deterministic"] is True and options["seed"] == 1
    again = train(config=os.path.join(out, "run_config.json"), out_dir=str(tmp_path))
    assert again["final_loss"] == pytest.approx(result["final_loss"], rel=1e-6)
    assert again["metrics"] == result["metrics"]
    for a, b in zip(_weights(os.path.join(out, "model.keras")), _weights(str(tmp_path / "model.keras"))):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_interrupted_run_resumes_and_matches(reference_run, manifest, tmp_path):
    out, result = reference_run
    kwargs = dict(epochs=2, out_dir=str(tmp_path), seed=1, deterministic=True, lr_schedule="cosine",
                  warmup_steps=1, early_stopping=5, **TINY)
    with pytest.raises(KeyboardInterrupt):
        train("gated_classifier", manifest, callbacks=[_Interrupt(at=0)], **kwargs)
    assert backup_epoch(str(tmp_path / "backup")) == 1
    keras.backend.clear_session()
    resumed = train("gated_classifier", manifest, **kwargs)
    assert resumed["initial_epoch"] == 1 and resumed["epochs_run"] == 1
    assert _history(str(tmp_path)) == _history(out)  # the CSV continues where it stopped
    assert resumed["final_loss"] == pytest.approx(result["final_loss"], rel=1e-6)
    assert resumed["metrics"] == result["metrics"]
    for a, b in zip(_weights(os.path.join(out, "model.keras")), _weights(str(tmp_path / "model.keras"))):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


class _PoisonWeights(keras.callbacks.Callback):
    """Sets one kernel to NaN at the start of epoch ``at`` (0-based)."""

    def __init__(self, at):
        super().__init__()
        self.at = at

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
    weights = _weights(last_good)
    assert all(np.isfinite(w).all() for w in weights)


class _Inspect(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.policy = self.model.get_layer("scores").dtype_policy.name
        self.optimizer = type(self.model.optimizer).__name__
        self.jit_compile = self.model.jit_compile
        self.steps_per_execution = self.model.steps_per_execution


@pytest.mark.parametrize("policy, optimizer", [("mixed_bfloat16", "Adam"), ("mixed_float16", "LossScaleOptimizer")])
def test_mixed_precision_jit_and_steps_per_execution(manifest, tmp_path, policy, optimizer):
    inspect = _Inspect()
    result = train(
        "gated_classifier", manifest, epochs=1, out_dir=str(tmp_path), mixed_precision=policy,
        jit_compile=True, steps_per_execution=2, callbacks=[inspect], **TINY
    )
    assert np.isfinite(result["final_loss"])
    assert (inspect.policy, inspect.optimizer) == (policy, optimizer)
    assert inspect.jit_compile is True and inspect.steps_per_execution == 2
    assert keras.config.dtype_policy().name == "float32", "train() must restore the global dtype policy"
    # Zoo models rebuild from hyperparameters: the trained model reloads in float32.
    model = keras.saving.load_model(str(tmp_path / "model.keras"), safe_mode=True)
    x = model.preprocess(np.zeros((2, 32, 32, 3), "uint8"), ["what color is the circle"] * 2)
    scores = keras.ops.convert_to_numpy(model(x)["scores"])
    assert scores.dtype == np.float32 and np.isfinite(scores).all()


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
    try:
        deadline = time.monotonic() + 240
        while backup_epoch(os.path.join(killed, "backup")) < 1:
            assert proc.poll() is None, "the run ended before its first backup"
            assert time.monotonic() < deadline, "no backup after 240 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
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
    assert _history(killed) == _history(reference)
    for a, b in zip(_weights(os.path.join(reference, "model.keras")), _weights(os.path.join(killed, "model.keras"))):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
