"""The `mmzoo` command, end to end on tiny models: data, train, evaluate,
export, predict, serve-config, list; bad input exits 2 with a message."""

import json
import os

import pytest

from mmzoo.cli import main
from mmzoo.data import label_names_from_records, read_manifest


def _last_json(out: str):
    return json.loads(out.strip().splitlines()[-1])


def test_train_evaluate_export_predict_serve_config(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["data", "--out", str(data), "--num-images", "24", "--image-size", "32"]) == 0
    manifest = capsys.readouterr().out.strip()
    assert os.path.isfile(manifest)

    # Your own file's names for the columns: --columns says which is which.
    renamed = os.path.join(os.path.dirname(manifest), "renamed.jsonl")
    with open(manifest) as src, open(renamed, "w") as out:
        for line in src:
            row = json.loads(line)
            out.write(json.dumps({"path": row["image"], "question": row["text"], "answer": row["label"]}) + "\n")
    columns = ["--columns", "image=path,text=question,label=answer"]

    run = tmp_path / "run"
    args = ["train", "concat_classifier", "--data", renamed, *columns, "--epochs", "1", "--batch-size", "8",
            "--preset", "tiny", "--out", str(run), "--set", "image_size=[32,32]", "--quiet", "--json"]
    assert main(args) == 0
    result = _last_json(capsys.readouterr().out)
    assert result["task"] == "classification" and 0.0 <= result["metrics"]["accuracy"] <= 1.0
    for name in ("model.keras", "metrics.json", "history.csv", "run_config.json"):
        assert (run / name).is_file(), name
    saved = json.loads((run / "run_config.json").read_text())["columns"]
    assert saved == {"image": "path", "text": "question", "label": "answer"}

    assert main(["evaluate", str(run / "model.keras"), "--data", renamed, *columns]) == 0
    metrics = _last_json(capsys.readouterr().out)
    assert set(metrics) >= {"accuracy", "macro_f1", "num_examples"} and metrics["num_examples"] == 24
    assert main(["evaluate", str(run / "model.keras"), "--data", manifest, "--json"]) == 0
    assert _last_json(capsys.readouterr().out) == metrics  # the same rows under mmzoo's own names

    base = tmp_path / "saved_models"
    assert main(["export", str(run / "model.keras"), "--base-dir", str(base), "--name", "clf"]) == 0
    version_dir = capsys.readouterr().out.strip().splitlines()[-1]
    assert version_dir == str(base / "clf" / "1") and (base / "clf" / "1" / "saved_model.pb").is_file()

    image = str(data / "images" / "000000.png")
    assert main(["predict", str(base / "clf"), "--image", image, "--text", "what color is the circle"]) == 0
    prediction = _last_json(capsys.readouterr().out)
    labels = label_names_from_records(read_manifest(manifest))  # what `train` learned
    assert len(prediction["classes"]) == 1 and prediction["classes"][0] in labels
    assert len(prediction["scores"][0]) == len(labels)

    assert main(["serve-config", str(base)]) == 0
    config = open(capsys.readouterr().out.strip().splitlines()[0]).read()
    assert 'name: "clf"' in config and "base_path" in config


def test_list_without_params_names_every_entry(capsys):
    assert main(["list", "--no-params"]) == 0
    out = capsys.readouterr().out
    for name in ("concat_classifier", "dual_encoder", "transformer_captioner"):
        assert name in out


def test_list_counts_the_params_of_every_entry(capsys):
    import mmzoo

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[2] for line in out.splitlines()[1:] if line.split()[0] in mmzoo.list_models()}
    assert set(rows) == set(mmzoo.list_models())
    assert all(int(params.replace(",", "")) > 0 for params in rows.values())
    assert out.splitlines()[-1].startswith("params: the 'default' preset, 2 classes")


def test_bad_input_is_a_clear_error_with_exit_2(tmp_path, capsys):
    assert main(["train", "no_such_model", "--data", str(tmp_path / "missing.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "error" in err and ("missing.jsonl" in err or "no_such_model" in err)
    assert main(["evaluate", str(tmp_path / "nope.keras"), "--data", "x.jsonl"]) == 2
    assert "nope.keras" in capsys.readouterr().err


def test_export_tf_example_and_serve_config_with_batching(tmp_path, capsys):
    import shlex

    import mmzoo

    model_path = tmp_path / "clf.keras"
    mmzoo.build("concat_classifier", preset="tiny", num_classes=3).save(model_path)
    base = tmp_path / "saved_models"
    args = ["export", str(model_path), "--base-dir", str(base), "--input-type", "tf_example", "--text-feature", "question"]
    assert main(args) == 0
    version_dir = capsys.readouterr().out.strip().splitlines()[-1]
    with open(os.path.join(version_dir, "assets.extra", "mmzoo.json")) as f:
        meta = json.load(f)
    assert meta["input_type"] == "tf_example"
    assert meta["feature_keys"] == {"image_bytes": "image/encoded", "text": "question"}
    assert meta["signatures"]["classify"]["method_name"] == "tensorflow/serving/classify"
    assert {"serving_default", "tf_example", "classify"} <= set(meta["signatures"])

    assert main(["serve-config", str(base), "--batching", "--num-batch-threads", "2", "--local"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    config, batching = lines[0], lines[1]
    assert f'base_path: "{base.resolve() / "clf"}"' in open(config).read()
    assert open(batching).read().splitlines() == [
        "max_batch_size { value: 128 }", "batch_timeout_micros { value: 1000 }",
        "max_enqueued_batches { value: 2 }", "num_batch_threads { value: 2 }"]
    server = shlex.split(lines[lines.index(next(l for l in lines if l.startswith("# tensorflow_model_server"))) + 1])
    assert server[0] == "tensorflow_model_server" and f"--model_config_file={config}" in server
    assert "--enable_batching" in server and f"--batching_parameters_file={batching}" in server
    docker = shlex.split(lines[lines.index("# TF Serving in Docker:") + 1])
    assert f"{base.resolve()}:{base.resolve()}" in docker and f"--batching_parameters_file={batching}" in docker

    assert main(["export", str(model_path), "--format", "tflite", "--input-type", "tf_example"]) == 2
    assert "--input-type/--image-feature/--text-feature apply to the TF Serving SavedModel export" in (
        capsys.readouterr().err)


def test_export_pixel_limits(tmp_path, capsys):
    import mmzoo

    model_path = tmp_path / "clf.keras"
    mmzoo.build("concat_classifier", preset="tiny", num_classes=3).save(model_path)
    base = str(tmp_path / "saved_models")
    for flags, expected in (([], [25_000_000, 100_000_000]),
                            (["--max-image-pixels", "none", "--max-request-pixels", "4_000_000"], [50_000_000, 4_000_000]),
                            (["--max-request-pixels", "None"], [25_000_000, None])):
        assert main(["export", str(model_path), "--base-dir", base, *flags]) == 0
        version_dir = capsys.readouterr().out.strip().splitlines()[-1]
        with open(os.path.join(version_dir, "assets.extra", "mmzoo.json")) as f:
            meta = json.load(f)
        assert [meta["max_image_pixels"], meta["max_request_pixels"]] == expected, flags
    with pytest.raises(SystemExit):
        main(["export", str(model_path), "--base-dir", base, "--max-request-pixels", "0"])
    assert "expected a positive number of pixels or 'none'. Received: '0'" in capsys.readouterr().err


def test_serve_config_starts_without_tensorflow(tmp_path):
    """`mmzoo serve-config` writes a text file from a directory listing: no TensorFlow, no Keras."""
    import subprocess
    import sys

    (tmp_path / "saved_models" / "clf" / "1").mkdir(parents=True)
    (tmp_path / "saved_models" / "clf" / "1" / "saved_model.pb").write_bytes(b"")
    code = ("import sys; from mmzoo.cli import main; rc = main(['serve-config', 'saved_models']); "
            "print('imported:', sorted(m for m in ('tensorflow', 'keras') if m in sys.modules)); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "imported: []" in proc.stdout and 'name: "clf"' in (tmp_path / "saved_models" / "models.config").read_text()


def test_mmzoo_export_names_load_on_first_use():
    """mmzoo.export's names come from its submodules when first used (what lets serve-config skip TensorFlow)."""
    import mmzoo.export

    assert sorted(mmzoo.export.__all__) == sorted(mmzoo.export._WHERE)
    for name in mmzoo.export.__all__:
        assert getattr(mmzoo.export, name) is not None and name in dir(mmzoo.export)
    assert mmzoo.export.tflite.__name__ == "mmzoo.export.tflite"  # a submodule, also before its import
    with pytest.raises(AttributeError, match="no attribute 'export_savedmodel'"):
        mmzoo.export.export_savedmodel
