"""Tests for mmzoo/training/config.py: RunConfig, config files, --set overrides, the command line."""

import argparse
import dataclasses
import inspect
import json
import os

import pytest

from mmzoo import training
from mmzoo.cli import build_parser
from mmzoo.training import RUN_ARGUMENTS, RunConfig, load_run_config, train


# ------------------------------------------------------------------ overrides and configs
def test_parse_overrides_types_and_nesting():
    out = training.parse_overrides(
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
        training.parse_overrides([bad])


def test_parse_overrides_conflict():
    with pytest.raises(ValueError, match="conflicts"):
        training.parse_overrides(["a=1", "a.b=2"])


def test_merge_overrides_is_deep():
    merged = training.merge_overrides({"a": {"x": 1, "y": 2}, "b": 1}, {"a": {"y": 3}, "c": 4})
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
    options = training.cli_options(args)
    assert options == {
        "name": "gated_classifier", "data": "a.jsonl", "epochs": 2, "seed": 3, "strategy": "mirrored",
        "out_dir": "o", "jit_compile": False, "verbose": 2,
        "overrides": {"dropout": 0.3, "fusion_kwargs": {"units": 8}},
    }
    # Flags not given stay unset, so train()'s defaults apply.
    plain = training.cli_options(build_parser().parse_args(["train", "gated_classifier", "--data", "d.jsonl"]))
    assert plain == {"name": "gated_classifier", "data": "d.jsonl"}
    with pytest.raises(ValueError, match="needs a model NAME and --data"):
        training.cli_options(build_parser().parse_args(["train", "gated_classifier"]))


# ------------------------------------------------------------------ RunConfig
# One run, spelled four ways: flags, JSON, YAML, keyword arguments.
FLAGS = ["train", "gated_classifier", "--data", "d.jsonl", "--val-data", "v.jsonl",
         "--columns", "image=filepath,text=title", "--epochs", "3",
         "--batch-size", "16", "--preset", "tiny", "--out", "runs/x", "--set", "dropout=0.1",
         "--set", "image_size=[32,32]", "--learning-rate", "0.002", "--lr-schedule", "cosine",
         "--warmup-steps", "2", "--early-stopping", "4", "--seed", "7", "--deterministic", "--strategy", "mirrored",
         "--tpu", "t1", "--cpu-devices", "2", "--mixed-precision", "mixed_bfloat16", "--jit-compile", "--steps-per-execution", "2",
         "--skip-bad", "--cache", "none", "--keep-checkpoints", "--quiet", "--text-preset", "bert",
         "--image-preset", "vit", "--train-towers", "--unfreeze-after", "2", "--unfreeze-layers", "1",
         "--unfreeze-lr-factor", "0.5", "--lora-rank", "4"]
KWARGS = dict(name="gated_classifier", data="d.jsonl", val_data="v.jsonl",
              columns={"image": "filepath", "text": "title"}, epochs=3, batch_size=16, preset="tiny",
              out_dir="runs/x", overrides={"dropout": 0.1, "image_size": [32, 32]}, learning_rate=0.002,
              lr_schedule="cosine", warmup_steps=2, early_stopping=4, seed=7, deterministic=True,
              strategy="mirrored", tpu="t1", cpu_devices=2, mixed_precision="mixed_bfloat16", jit_compile=True,
              steps_per_execution=2, skip_bad=True, cache="none", keep_checkpoints=True, verbose=2,
              text_preset="bert", image_preset="vit", train_towers=True, unfreeze_after=2, unfreeze_layers=1,
              unfreeze_lr_factor=0.5, lora_rank=4)
FILE = {"name": "gated_classifier", "data": "d.jsonl", "val-data": "v.jsonl",
        "columns": "image=filepath,text=title", "epochs": 3, "batch-size": 16,
        "preset": "tiny", "out": "runs/x", "set": ["dropout=0.1", "image_size=[32,32]"], "learning-rate": 0.002,
        "lr_schedule": "cosine", "warmup_steps": 2, "early_stopping": 4, "seed": 7, "deterministic": True,
        "strategy": "mirrored", "tpu": "t1", "cpu_devices": 2, "mixed_precision": "mixed_bfloat16", "jit_compile": True,
        "steps_per_execution": 2, "skip_bad": True, "cache": "none", "keep_checkpoints": True, "verbose": 2,
        "text-preset": "bert", "image_preset": "vit", "train_towers": True, "unfreeze_after": 2, "unfreeze_layers": 1,
        "unfreeze_lr_factor": 0.5, "lora-rank": 4}


def test_run_config_from_flags_json_yaml_and_kwargs_is_the_same(tmp_path):
    import yaml

    json_path, yaml_path = tmp_path / "run.json", tmp_path / "run.yml"
    json_path.write_text(json.dumps(FILE))
    yaml_path.write_text(yaml.safe_dump(FILE))
    from_kwargs = RunConfig(**KWARGS)
    assert RunConfig.from_namespace(build_parser().parse_args(FLAGS)) == from_kwargs
    assert RunConfig.from_file(str(json_path)) == from_kwargs
    assert RunConfig.from_file(str(yaml_path)) == from_kwargs
    assert RunConfig.from_options(FILE) == from_kwargs
    # Every run argument differs from its default here, so none was lost on the way.
    defaults = RunConfig.defaults()
    assert [k for k in RUN_ARGUMENTS if getattr(from_kwargs, k) == defaults[k]] == []


def test_run_config_is_the_one_list_of_arguments():
    assert RUN_ARGUMENTS == tuple(f.name for f in dataclasses.fields(RunConfig))
    signature = inspect.signature(train).parameters
    assert {k: signature[k].default for k in RUN_ARGUMENTS} == RunConfig.defaults()
    assert [k for k in signature if k not in RUN_ARGUMENTS] == ["callbacks", "config", "overwrite"]
    # Every flag of `mmzoo train` is a run argument or one of the command line's own.
    parser = build_parser()
    train_parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    flags = {a.dest for a in train_parser._actions if a.dest != "help"}
    assert flags - {"out"} - set(RUN_ARGUMENTS) == {"config", "set", "quiet", "json", "overwrite"}
    assert set(RUN_ARGUMENTS) - flags == {"out_dir", "overrides", "verbose"}


@pytest.mark.parametrize("spelled", ["yaml", "yml", "json"])
def test_unknown_key_names_the_key_and_the_file(tmp_path, spelled):
    path = tmp_path / f"run.{spelled}"
    path.write_text(json.dumps({"name": "gated_classifier", "epoch": 3}))  # JSON is YAML too
    with pytest.raises(ValueError) as info:
        RunConfig.from_file(str(path))
    message = str(info.value)
    assert "Unknown run config key 'epoch'" in message and repr(str(path)) in message
    assert "did you mean 'epochs'" in message
    with pytest.raises(ValueError, match=r"Unknown run config key 'lr' in 'sweep.yaml'"):
        RunConfig.from_options({"lr": 0.1}, source="sweep.yaml")


def test_saved_run_config_keeps_todays_keys_and_values():
    config = RunConfig(name="m", data="d.jsonl", out_dir="o", epochs="3", warmup_steps=None,
                       overrides={"dropout": 0.1, "tokenizer": object()}, deterministic=1)
    saved = config.saved({"steps": 2})
    assert list(saved) == [*RUN_ARGUMENTS, "resolved"]
    assert saved["data"] == os.path.abspath("d.jsonl") and saved["out_dir"] == os.path.abspath("o")
    assert saved["val_data"] is None and saved["epochs"] == 3 and saved["warmup_steps"] == 0
    assert saved["deterministic"] is True and saved["keep_checkpoints"] is False
    assert saved["overrides"] == {"dropout": 0.1} and config.dropped_overrides() == ["tokenizer"]
    assert saved["resolved"] == {"steps": 2}
    json.dumps(saved)
    # What a run saved reads back as the same arguments.
    assert RunConfig.from_options(json.loads(json.dumps(saved))) == dataclasses.replace(
        config, data=saved["data"], out_dir=saved["out_dir"], epochs=3, warmup_steps=0, deterministic=True,
        overrides={"dropout": 0.1})


def test_train_arguments_over_a_config_file(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"name": "gated_classifier", "data": "d.jsonl", "epochs": 9, "seed": 4}))
    explicit = {**RunConfig.defaults(), "seed": 1}  # train(config=path, seed=1)
    config = RunConfig.for_train(explicit, str(path))
    assert (config.name, config.data, config.epochs, config.seed) == ("gated_classifier", "d.jsonl", 9, 1)
    assert RunConfig.for_train(explicit, RunConfig(epochs=2)).epochs == 2
    assert RunConfig.for_train({**RunConfig.defaults(), "epochs": 3}) == RunConfig(epochs=3)


@pytest.mark.parametrize("change, message", [
    ({"name": None}, "needs a model name and a training manifest"),
    ({"epochs": 0}, "epochs must be positive"),
    ({"batch_size": 0}, "batch_size must be positive"),
    ({"mixed_precision": "fp8"}, "mixed_precision must be one of"),
    ({"steps_per_execution": 0}, "steps_per_execution must be positive"),
    ({"early_stopping": 0}, "early_stopping"),
    ({"lr_schedule": "step"}, "lr_schedule must be one of"),
    ({"warmup_steps": -1}, "warmup_steps must be >= 0"),
    ({"cache": "disk"}, r"cache must be one of \['auto', 'memory', 'none'\]. Received: cache='disk'"),
])
def test_validate(change, message):
    RunConfig(name="m", data="d").validate()
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(RunConfig(name="m", data="d"), **change).validate()
