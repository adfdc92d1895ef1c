"""Tests for mmzoo/training/loop.py: ``train`` end to end (outputs, repeat, resume, precision)."""

import json
import logging
import os
import re
import warnings

import keras
import numpy as np
import pytest

from mmzoo.training import RunConfig, backup_epoch, dtype_policy, load_run_config, run, train
from tests.training.runs import TINY, Interrupt, history, weights


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
    with pytest.raises(ValueError, match="train needs a model name and a training manifest"):
        run(RunConfig(data=manifest, out_dir=str(tmp_path)))
    assert os.listdir(tmp_path) == [], "a rejected run writes nothing"
    # Refused after the run directory was made (a missing validation manifest, a misspelled
    # builder argument): the folders it made go again; one that was there stays.
    out = tmp_path / "runs" / "a"
    with pytest.raises(FileNotFoundError, match=r"No dataset file at 'nope\.jsonl'"):
        train("gated_classifier", manifest, val_data="nope.jsonl", out_dir=str(out), **TINY)
    with pytest.raises(TypeError, match="did you mean 'hidden_units'"):
        train("gated_classifier", manifest, out_dir=str(out), **{**TINY, "overrides": {"hiden_units": 8}})
    assert os.listdir(tmp_path) == []
    (tmp_path / "mine").mkdir()
    with pytest.raises(FileNotFoundError):
        train("gated_classifier", manifest, val_data="nope.jsonl", out_dir=str(tmp_path / "mine"), **TINY)
    assert os.listdir(tmp_path) == ["mine"]


def test_empty_questions_are_bad_rows_and_megabyte_ones_are_cut(manifest, tmp_path, caplog):
    rows = [json.loads(line) for line in open(manifest)]
    for row in rows:  # the edited manifest lives elsewhere: absolute image paths
        row["image"] = os.path.join(os.path.dirname(os.path.abspath(manifest)), row["image"])
    rows[2]["text"] = ""
    rows[4]["text"] = "what " * 200_000  # 1,000,000 characters
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))} line 3: empty text: the model reads each row's"):
        train("text_only_classifier", str(path), epochs=1, out_dir=str(tmp_path / "strict"), **TINY)
    with caplog.at_level(logging.WARNING):
        result = train("text_only_classifier", str(path), epochs=1, out_dir=str(tmp_path / "skip"), skip_bad=True,
                       **TINY)
    assert result["epochs_run"] == 1
    warnings = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert f"mmzoo train: kept {len(rows) - 1} rows, skipped 1: {path} line 3: empty text" in warnings
    assert f"cut 1 text(s) longer than 10,000 characters: {path} line 5: text of 1,000,000 characters" in warnings
    with open(os.path.join(str(tmp_path / "skip"), "run_config.json")) as f:
        assert json.load(f)["resolved"]["num_examples"] == len(rows) - 1


def test_dtype_policy_is_restored():
    with dtype_policy("mixed_bfloat16"):
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    with pytest.raises(RuntimeError), dtype_policy("mixed_float16"):
        raise RuntimeError("building failed")
    assert keras.config.dtype_policy().name == "float32"


# ------------------------------------------------------------------ a run, its outputs, its config
@pytest.fixture(scope="module")
def reference_run(manifest, tmp_path_factory):
    """An uninterrupted 2-epoch deterministic run with a cosine schedule and warmup."""
    out = str(tmp_path_factory.mktemp("reference"))
    result = train(
        "gated_classifier", manifest, epochs=2, out_dir=out, seed=1, deterministic=True,
        lr_schedule="cosine", warmup_steps=1, early_stopping=5, **TINY
    )
    keras.backend.clear_session(free_memory=False)
    return out, result


def test_run_writes_every_output(reference_run):
    out, result = reference_run
    for name in ("model.keras", "metrics.json", "history.csv", "run_config.json"):
        assert os.path.isfile(os.path.join(out, name)), name
    assert not os.path.exists(os.path.join(out, "checkpoints")), "by default no checkpoint outlives the run"
    assert os.listdir(os.path.join(out, "logs")), "no TensorBoard logs"
    assert not os.path.exists(os.path.join(out, "backup")), "the backup is deleted after a finished run"
    assert len(history(out)) == 3  # header + 2 epochs
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


def test_run_config_json_has_the_keys_runs_before_the_package_wrote(reference_run, manifest):
    out, result = reference_run
    with open(os.path.join(out, "run_config.json")) as f:
        saved = json.load(f)
    # The keys and order of mmzoo 0.x's run_config.json (a run directory written then still resumes),
    # then the pretrained towers' arguments and the column names added since, then what the run resolved.
    assert list(saved) == [
        "name", "data", "val_data", "epochs", "batch_size", "preset", "out_dir", "overrides", "learning_rate",
        "seed", "skip_bad", "verbose", "strategy", "tpu", "cpu_devices", "mixed_precision", "jit_compile",
        "steps_per_execution", "deterministic", "early_stopping", "lr_schedule", "warmup_steps", "cache",
        "keep_checkpoints",
        "text_preset", "image_preset", "train_towers", "unfreeze_after", "unfreeze_layers", "unfreeze_lr_factor",
        "lora_rank", "columns",
        "resolved",
    ]
    assert saved["text_preset"] is None and saved["lora_rank"] is None and saved["train_towers"] is False
    assert saved["data"] == os.path.abspath(manifest) and saved["out_dir"] == os.path.abspath(out)
    assert saved["overrides"] == {"image_size": [32, 32]} and saved["deterministic"] is True
    assert list(saved["resolved"])[:8] == ["images_in_memory", "mmzoo_version", "preset", "learning_rate",
                                           "steps_per_epoch", "total_steps", "num_examples", "tokenizer"]
    assert saved["resolved"]["preset"] == result["preset"] == "tiny"
    assert saved["resolved"]["dropped_overrides"] == [] and saved["resolved"]["num_replicas"] == 1


def test_images_decoded_once_train_the_same_model_as_decoding_every_epoch(reference_run, manifest, tmp_path):
    out, result = reference_run  # cache="auto": these few images are kept in memory
    with open(os.path.join(out, "run_config.json")) as f:
        assert json.load(f)["cache"] == "auto"
    again = train(
        "gated_classifier", manifest, epochs=2, out_dir=str(tmp_path), seed=1, deterministic=True,
        lr_schedule="cosine", warmup_steps=1, early_stopping=5, cache="none", **TINY
    )
    assert again["final_loss"] == pytest.approx(result["final_loss"], rel=1e-6)
    for a, b in zip(weights(os.path.join(out, "model.keras")), weights(str(tmp_path / "model.keras"))):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_run_config_repeats_the_run(reference_run, tmp_path):
    out, result = reference_run
    options = load_run_config(os.path.join(out, "run_config.json"))
    assert options["deterministic"] is True and options["seed"] == 1
    again = train(config=os.path.join(out, "run_config.json"), out_dir=str(tmp_path))
    assert again["final_loss"] == pytest.approx(result["final_loss"], rel=1e-6)
    assert again["metrics"] == result["metrics"]
    for a, b in zip(weights(os.path.join(out, "model.keras")), weights(str(tmp_path / "model.keras"))):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_interrupted_run_resumes_and_matches(reference_run, manifest, tmp_path):
    out, result = reference_run
    kwargs = dict(epochs=2, out_dir=str(tmp_path), seed=1, deterministic=True, lr_schedule="cosine",
                  warmup_steps=1, early_stopping=5, **TINY)
    with pytest.raises(KeyboardInterrupt):
        train("gated_classifier", manifest, callbacks=[Interrupt(at=0)], **kwargs)
    assert backup_epoch(str(tmp_path / "backup")) == 1
    keras.backend.clear_session(free_memory=False)
    resumed = train("gated_classifier", manifest, **kwargs)
    assert resumed["initial_epoch"] == 1 and resumed["epochs_run"] == 1
    assert history(str(tmp_path)) == history(out)  # the CSV continues where it stopped
    assert resumed["final_loss"] == pytest.approx(result["final_loss"], rel=1e-6)
    assert resumed["metrics"] == result["metrics"]
    for a, b in zip(weights(os.path.join(out, "model.keras")), weights(str(tmp_path / "model.keras"))):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


class _Inspect(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.policy = self.model.get_layer("scores").dtype_policy.name
        self.optimizer = type(self.model.optimizer).__name__
        self.jit_compile = self.model.jit_compile
        self.steps_per_execution = self.model.steps_per_execution


@pytest.mark.parametrize("policy, optimizer", [("mixed_bfloat16", "Adam"), ("mixed_float16", "LossScaleOptimizer")])
def test_mixed_precision_jit_and_steps_per_execution(manifest, tmp_path, policy, optimizer):
    inspect = _Inspect()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train(
            "gated_classifier", manifest, epochs=1, out_dir=str(tmp_path), mixed_precision=policy,
            jit_compile=True, steps_per_execution=2, callbacks=[inspect], **TINY
        )
    assert not [str(w.message) for w in caught if "jit_compile" in str(w.message)]  # Keras' refusal, lifted
    assert np.isfinite(result["final_loss"])
    assert (inspect.policy, inspect.optimizer) == (policy, optimizer)
    assert inspect.jit_compile is True and inspect.steps_per_execution == 2
    assert keras.config.dtype_policy().name == "float32", "train() must restore the global dtype policy"
    # The run's model.keras reloads as it was trained: under the policy, with its optimizer's state.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = keras.saving.load_model(str(tmp_path / "model.keras"), safe_mode=True)
    assert not [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert (model.dtype_policy.name, type(model.optimizer).__name__) == (policy, optimizer)
    assert int(model.optimizer.iterations) > 0
    x = model.preprocess(np.zeros((2, 32, 32, 3), "uint8"), ["what color is the circle"] * 2)
    scores = keras.ops.convert_to_numpy(model(x)["scores"])
    assert scores.dtype == np.float32 and np.isfinite(scores).all()
