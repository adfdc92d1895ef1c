"""What a person sees from `mmzoo`: no TensorFlow log lines or known Keras warnings,
a readable train summary with chance levels, a refusal to overwrite a finished run,
one-line errors that say what to do, exports named after the run, help for every flag."""

import argparse
import json
import os
import re
import subprocess
import sys
import types

import numpy as np
import pytest

from mmzoo.cli import _LOAD_TIME_NOISE, PRESET_HELP, build_parser, export_name

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SENTENCE = "Cannot decode image: the bytes are not a JPEG, PNG, GIF, BMP or WebP file (2 bytes, starting with bytes 78 78)."
# What TensorFlow and Keras wrote on a normal run before (the cuInit line reads like a real error).
NOISE = ("absl::InitializeLog", "cudart_stub", "cuInit", "port.cc", "Skipping variable loading",
         "`shuffle=True` was passed", "Traceback")


# ------------------------------------------------------------------ pure pieces
def test_image_preprocessor_eager_error_is_the_sentence():
    import tensorflow as tf

    from mmzoo.preprocessing import ImagePreprocessor

    pre = ImagePreprocessor((8, 8))
    for bad in (tf.constant([b"xx"]), tf.constant(b"xx")):
        with pytest.raises(tf.errors.InvalidArgumentError) as info:
            pre(bad)
        assert str(info.value) == SENTENCE
    assert pre(tf.io.encode_png(np.zeros((4, 4, 3), "uint8"))[None]).shape == (1, 8, 8, 3)


def test_load_time_noise_is_exactly_the_known_lines():
    noise = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
        "I0000 00:00:1795968449.553767    4109 port.cc:153] oneDNN custom operations are on. You may see "
        "slightly different numerical results due to floating-point round-off errors.\n",
        "I0000 00:00:1795968449.554097    4109 cudart_stub.cc:31] Could not find cuda drivers on your machine, "
        "GPU will not be used.\n",
    ]
    kept = [
        "E0000 00:00:1795968454.449205    4109 some_op.cc:52] a real error\n",
        "Traceback (most recent call last):\n",
        "I0000 00:00:1795968449.554097    4109 cudart_stub.cc:31] something else\n",
    ]
    assert all(_LOAD_TIME_NOISE.match(line) for line in noise)
    assert not any(_LOAD_TIME_NOISE.match(line) for line in kept)


@pytest.mark.parametrize("path, name", [
    ("runs/my_run/model.keras", "my_run"),
    ("runs/my_run/checkpoints/epoch_003.keras", "my_run"),
    ("/tmp/clf.keras", "clf"),
    ("model.keras", os.path.basename(os.getcwd())),
])
def test_export_name_is_the_run_folder(path, name):
    assert export_name(path) == name


def _arguments(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from ((f"{name} {a}", act, sub) for a, act, _ in _arguments(sub))
        elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            yield "/".join(action.option_strings) or action.dest, action, parser


def test_every_argument_has_help_with_its_default():
    parser = build_parser()
    seen = 0
    for name, action, sub in _arguments(parser):
        seen += 1
        assert action.help, f"{name} has no help text"
        if action.default not in (None, False, argparse.SUPPRESS):
            assert str(action.default) in sub.format_help(), f"{name}: default {action.default!r} not shown"
        if sub.prog.endswith("train") and action.option_strings and action.nargs != 0:
            # `train` leaves unset flags unset (they must not mask --config): the default is in the text.
            assert "default" in action.help.lower() or "required" in action.help.lower(), name
    assert seen > 40
    help_text = " ".join(parser._subparsers._group_actions[0].choices["train"].format_help().split())
    assert "tiny | small | default" in help_text and "classic" in help_text and "shapes" in help_text


def test_preset_help_names_every_registered_preset():
    from mmzoo.registry import get_entry, list_models

    presets = set()
    for name in list_models():
        entry = get_entry(name)
        presets |= set(entry.presets)
        assert {"tiny", "small", "default"} <= set(entry.presets), name
        for preset in set(entry.presets) - {"tiny", "small", "default"}:
            # an extra preset is listed with the entries that have it
            section = PRESET_HELP.split(preset, 1)[1].split(";")[0]
            assert name in section, (name, preset)
    assert presets == set(re.findall(r"\b(tiny|small|default|classic|shapes)\b", PRESET_HELP))


def test_chance_levels():
    from mmzoo.data.records import Record
    from mmzoo.training import chance_levels, metric_lines

    records = [Record(image=f"{i}.png", text="q", label=label) for i, label in enumerate("aaab")]
    chance = chance_levels(types.SimpleNamespace(task="classification"), records)
    assert chance["metrics"]["accuracy"] == pytest.approx(0.75)
    assert chance["metrics"]["macro_f1"] == pytest.approx(2 * 0.75 / 1.75 / 2)
    assert "'a'" in chance["rule"]
    lines = metric_lines({"accuracy": 0.9, "macro_f1": 0.8, "num_examples": 4}, chance)
    assert lines[0].split()[:4] == ["accuracy", "0.900", "chance", "0.750"] and len(lines) == 2



# ------------------------------------------------------------------ the commands, as a person runs them
def _env():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # no user setting
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _mmzoo(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "mmzoo.cli", *map(str, args)], env=_env(), cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def _assert_quiet(proc):
    for noise in NOISE:
        assert noise not in proc.stderr, f"{noise!r} in stderr:\n{proc.stderr[-3000:]}"


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    from mmzoo.datasets.shapes import generate_shapes_dataset

    return generate_shapes_dataset(str(tmp_path_factory.mktemp("shapes")), num_images=16, image_size=32)


def test_train_is_quiet_summarises_refuses_a_finished_run_and_exports_by_run_name(shapes, tmp_path):
    run = tmp_path / "my_run"
    train = ["train", "concat_classifier", "--data", shapes, "--epochs", "1", "--batch-size", "8",
             "--preset", "tiny", "--set", "image_size=[32,32]", "--out", run]
    first = _mmzoo(*train)
    assert first.returncode == 0, first.stderr[-3000:]
    _assert_quiet(first)
    out = first.stdout
    assert "accuracy" in out and "chance" in out and "most common answer" in out
    assert f"wrote {run}{os.sep}: model.keras" in out and "mmzoo export" in out
    assert not out.strip().splitlines()[-1].startswith("{"), "the summary, not JSON, without --json"
    assert "\x1b[" not in out, "no progress-bar escape codes in a log file"
    assert not (run / "checkpoints").exists()

    again = _mmzoo(*train)
    assert again.returncode == 2
    _assert_quiet(again)
    error = again.stderr.strip().splitlines()[-1]
    assert error.startswith("mmzoo train: error:") and "finished run" in error
    assert "--overwrite" in error and "--out" in error
    assert os.path.getmtime(run / "model.keras") < os.path.getmtime(run / "metrics.json") + 1

    over = _mmzoo(*train, "--overwrite", "--keep-checkpoints", "--epochs", "2", "--json")
    assert over.returncode == 0, over.stderr[-3000:]
    result = json.loads(over.stdout.strip().splitlines()[-1])
    assert result["epochs_run"] == 2 and result["chance"]["metrics"]["accuracy"] > 0
    assert sorted(os.listdir(run / "checkpoints")) == ["epoch_001.keras", "epoch_002.keras"]

    export = _mmzoo("export", run / "model.keras", "--base-dir", tmp_path / "saved_models")
    assert export.returncode == 0, export.stderr[-3000:]
    _assert_quiet(export)
    assert export.stdout.strip().splitlines()[-1] == str(tmp_path / "saved_models" / "my_run" / "1")
    with open(tmp_path / "saved_models" / "my_run" / "1" / "assets.extra" / "mmzoo.json") as f:
        assert json.load(f)["model_name"] == "my_run"

    exists = _mmzoo("export", run / "model.keras", "--base-dir", tmp_path / "saved_models", "--version", "1")
    assert exists.returncode == 2 and len(exists.stderr.strip().splitlines()) == 1
    assert "--overwrite" in exists.stderr and "Traceback" not in exists.stderr

    bad = tmp_path / "notes.png"
    bad.write_bytes(b"xx")
    good = os.path.join(os.path.dirname(shapes), "images", "000000.png")
    predict = _mmzoo("predict", tmp_path / "saved_models" / "my_run", "--image", good, bad,
                     "--text", "what color is the circle", "what shape is red")
    assert predict.returncode == 2
    _assert_quiet(predict)
    assert predict.stderr.strip() == f"mmzoo predict: error: {bad}: {SENTENCE}"


def test_evaluate_loads_without_the_optimizer_and_prints_chance_then_json(shapes, tmp_path, capsys, recwarn):
    from mmzoo.cli import main
    from mmzoo.training import train

    train("concat_classifier", shapes, epochs=1, batch_size=8, preset="tiny", out_dir=str(tmp_path),
          overrides={"image_size": [32, 32]}, verbose=0)
    recwarn.clear()
    assert main(["evaluate", str(tmp_path / "model.keras"), "--data", shapes]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    metrics = json.loads(lines[-1])
    assert metrics["num_examples"] == 16
    # Before the JSON, a person reads each metric beside its chance level on these records.
    assert lines[0] == f"mmzoo evaluate: {tmp_path / 'model.keras'} on {shapes}, 16 examples:"
    assert lines[1].startswith(f"  accuracy  {metrics['accuracy']:.3f}   chance ")
    assert "(always the most common answer, '" in lines[1]
    assert main(["evaluate", str(tmp_path / "model.keras"), "--data", shapes, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == metrics
    messages = [str(w.message) for w in recwarn]
    assert not [m for m in messages if "Skipping variable loading" in m], messages


def test_library_train_replaces_a_finished_run_and_refuses_with_overwrite_false(shapes, tmp_path):
    from mmzoo.training import RunExistsError, train

    kwargs = dict(epochs=1, batch_size=8, preset="tiny", out_dir=str(tmp_path),
                  overrides={"image_size": [32, 32]}, verbose=0)
    train("concat_classifier", shapes, **kwargs)
    (tmp_path / "logs" / "stale").write_text("from the first run")
    with pytest.raises(RunExistsError, match="finished run .*--overwrite"):
        train("concat_classifier", shapes, overwrite=False, **kwargs)
    train("concat_classifier", shapes, **kwargs)  # overwrite=None: trains again, old outputs removed
    assert not (tmp_path / "logs" / "stale").exists()
    assert (tmp_path / "metrics.json").is_file()


def test_export_refuses_a_taken_version_or_a_missing_file_before_importing_tensorflow(tmp_path):
    """Those checks need only the file system: the one-line error comes at once, not after the seconds
    that importing TensorFlow and loading the model take."""
    (tmp_path / "runs" / "clf").mkdir(parents=True)
    (tmp_path / "runs" / "clf" / "model.keras").write_bytes(b"not read: the version check comes first")
    (tmp_path / "saved_models" / "clf" / "1").mkdir(parents=True)
    probe = ("import sys\nfrom mmzoo.cli import main\ncode = main(sys.argv[1:])\n"
             "print(code, 'tensorflow' in sys.modules)\n")
    for args, error in (
        (["export", "runs/clf/model.keras", "--base-dir", "saved_models", "--version", "1"], "Version 1 already exists"),
        (["export", "runs/missing.keras"], "No model file at 'runs/missing.keras'"),
    ):
        proc = subprocess.run([sys.executable, "-c", probe, *args], env=_env(), cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        assert proc.stdout.split() == ["2", "False"], (args, proc.stdout, proc.stderr[-2000:])
        assert proc.stderr.startswith(f"mmzoo export: error: {error}") and len(proc.stderr.splitlines()) == 1
