"""Tests for mmzoo/distribute.py and distributed `mmzoo train` runs (subprocesses)."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from mmzoo import distribute

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1", KERAS_BACKEND="tensorflow")
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    from mmzoo.datasets.shapes import generate_shapes_dataset

    return generate_shapes_dataset(str(tmp_path_factory.mktemp("shapes")), num_images=16, image_size=32)


# ------------------------------------------------------------------ unit
def test_default_strategy_and_description():
    strategy = distribute.make_strategy("default")
    assert distribute.is_default(strategy)
    assert distribute.is_chief(strategy)
    info = distribute.describe(strategy, global_batch_size=32)
    assert info == {
        "strategy": "default", "num_replicas": 1, "num_workers": 1, "devices": [],
        "global_batch_size": 32, "per_replica_batch_size": 32,
    }


def test_mirrored_on_one_cpu_describes_its_replicas():
    strategy = distribute.make_strategy("mirrored")
    info = distribute.describe(strategy, global_batch_size=8)
    replicas = len(tf.config.list_logical_devices("CPU"))
    assert info["strategy"] == "MirroredStrategy" and info["num_replicas"] == replicas
    assert info["per_replica_batch_size"] == 8 // replicas


def test_make_strategy_errors(monkeypatch):
    with pytest.raises(ValueError, match="strategy must be one of"):
        distribute.make_strategy("parameter_server")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs TF_CONFIG"):
        distribute.make_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        distribute.make_strategy("multi_worker")


def test_configure_cpu_devices_after_initialisation_says_why():
    tf.constant(1.0)  # the runtime is initialised
    with pytest.raises(RuntimeError, match="already initialised"):
        distribute.configure_cpu_devices(len(tf.config.list_logical_devices("CPU")) + 1)
    with pytest.raises(ValueError, match="num_devices must be positive"):
        distribute.configure_cpu_devices(0)


@pytest.mark.parametrize("policy, expected", [
    ("data", tf.data.experimental.AutoShardPolicy.DATA),
    ("file", tf.data.experimental.AutoShardPolicy.FILE),
    ("off", tf.data.experimental.AutoShardPolicy.OFF),
])
def test_with_shard_policy(policy, expected):
    ds = distribute.with_shard_policy(tf.data.Dataset.range(4).batch(2), policy)
    assert ds.options().experimental_distribute.auto_shard_policy == expected
    with pytest.raises(ValueError, match="policy must be one of"):
        distribute.with_shard_policy(ds, "row")


def test_distribute_dataset_splits_the_global_batch():
    strategy = distribute.make_strategy("mirrored")
    ds = tf.data.Dataset.range(8).batch(4)
    ds.num_examples = 8
    out = distribute.distribute_dataset(strategy, ds)
    assert out.num_examples == 8
    batches = list(out)
    assert len(batches) == 2
    values = [sorted(np.concatenate([np.asarray(t) for t in strategy.experimental_local_results(b)]).tolist())
              for b in batches]
    assert values == [[0, 1, 2, 3], [4, 5, 6, 7]]
    plain = distribute.distribute_dataset(distribute.make_strategy("default"), ds)
    assert isinstance(plain, tf.data.Dataset)


def test_shard_policy_for(tmp_path):
    for i in range(2):
        (tmp_path / f"train-{i}.tfrecord").write_bytes(b"")
    assert distribute.shard_policy_for(str(tmp_path / "train-*.tfrecord")) == "file"
    assert distribute.shard_policy_for(str(tmp_path / "train-0.tfrecord")) == "data"
    assert distribute.shard_policy_for("data/manifest.jsonl") == "data"
    assert distribute.shard_policy_for(None) == "data"


@pytest.mark.parametrize("config, chief", [
    ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}, True),
    ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}, False),
    ({"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}, False),
    ({"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}, True),
])
def test_chief_from_tf_config(config, chief):
    assert distribute.chief_from_tf_config(config) is chief


# ------------------------------------------------------------------ subprocess runs
@pytest.mark.slow
def test_mirrored_two_cpus_matches_one_device_loss_curve(manifest, tmp_path):
    script = os.path.join(REPO, "tests", "scripts", "mirrored_vs_default.py")
    done = subprocess.run(
        [sys.executable, script, manifest, str(tmp_path)], env=_env(), capture_output=True, text=True, timeout=400
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    mirrored = report["mirrored"]["distribution"]
    assert (mirrored["num_replicas"], mirrored["global_batch_size"], mirrored["per_replica_batch_size"]) == (2, 8, 4)
    assert report["default"]["distribution"]["num_replicas"] == 1
    assert len(report["default_loss"]) == len(report["mirrored_loss"]) == 3
    assert report["default_loss"][-1] < report["default_loss"][0]  # it learns
    np.testing.assert_allclose(report["mirrored_loss"], report["default_loss"], rtol=1e-3)


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_multi_worker_two_processes_train_and_chief_saves(manifest, tmp_path):
    workers = [f"127.0.0.1:{_free_port()}" for _ in range(2)]
    out = str(tmp_path / "run")
    command = [
        sys.executable, "-m", "mmzoo.cli", "train", "gated_classifier", "--data", manifest, "--preset", "tiny",
        "--set", "image_size=[32,32]", "--epochs", "2", "--batch-size", "8", "--out", out,
        "--strategy", "multi_worker", "--quiet", "--json",
    ]
    procs = []
    try:
        for index in range(2):
            config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
            procs.append(subprocess.Popen(
                command, env=_env(TF_CONFIG=config), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            ))
        outputs = [p.communicate(timeout=400) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
    for p, (stdout, stderr) in zip(procs, outputs):
        assert p.returncode == 0, stderr[-3000:]
    chief, worker = (json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outputs)
    for result in (chief, worker):
        info = result["distribution"]
        assert info["strategy"] == "MultiWorkerMirroredStrategy"
        assert (info["num_workers"], info["num_replicas"]) == (2, 2)
        assert (info["global_batch_size"], info["per_replica_batch_size"]) == (8, 4)
    assert chief["distribution"]["is_chief"] and not worker["distribution"]["is_chief"]
    assert chief["final_loss"] == pytest.approx(worker["final_loss"], rel=1e-5)  # one model, trained together
    assert chief["model_path"] == os.path.join(out, "model.keras") and worker["model_path"] is None
    # Only the chief wrote OUT (the worker's backup is removed at the end).
    assert sorted(os.listdir(out)) == [  # no checkpoints/ without --keep-checkpoints
        "history.csv", "logs", "metrics.json", "model.keras", "run_config.json"
    ]
    import keras

    import mmzoo.models  # noqa: F401

    model = keras.saving.load_model(os.path.join(out, "model.keras"), safe_mode=True)
    x = model.preprocess(np.zeros((2, 32, 32, 3), "uint8"), ["what color is the circle"] * 2)
    assert np.isfinite(keras.ops.convert_to_numpy(model(x)["scores"])).all()
