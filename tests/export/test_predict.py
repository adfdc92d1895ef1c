"""run_saved_model (``mmzoo predict``) and the saved_model_cli consumer."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from mmzoo.data import read_manifest
from mmzoo.data.records import Record
from mmzoo.export import resolve_export_dir, run_saved_model, run_saved_model_on_records
from tests.export.tiny_models import LABELS, random_images


@pytest.fixture
def image_files(tmp_path):
    paths = []
    for i, data in enumerate(random_images(2, seed=11)):
        path = tmp_path / f"{i}.png"
        path.write_bytes(data)
        paths.append(str(path))
    return paths


def test_runs_on_files_and_strings(classifier_export, image_files):
    model, version_dir = classifier_export
    texts = ["a red circle", "blue square"]
    out = run_saved_model(os.path.dirname(version_dir), image_paths=image_files, texts=texts)
    json.dumps(out)  # JSON-serialisable
    images = [open(p, "rb").read() for p in image_files]
    expected = np.asarray(model(model.preprocess(tf.constant(images), tf.constant(texts)))["scores"])
    np.testing.assert_allclose(np.array(out["scores"]), expected, atol=1e-5)
    assert out["classes"] == [LABELS[i] for i in expected.argmax(-1)]
    assert out["class_ids"] == expected.argmax(-1).tolist()


def test_batch_size_runs_the_files_in_calls_with_the_same_outputs(classifier_export, image_files, capsys):
    from mmzoo.cli import main

    version_dir = classifier_export[1]
    paths, texts = image_files * 3, ["a red circle", "blue square"] * 3
    whole = run_saved_model(version_dir, image_paths=paths, texts=texts)
    in_calls = run_saved_model(version_dir, image_paths=paths, texts=texts, batch_size=4)  # 4 and 2
    np.testing.assert_allclose(in_calls["scores"], whole["scores"], atol=1e-5)
    assert in_calls["classes"] == whole["classes"] and len(in_calls["class_ids"]) == 6
    assert main(["predict", version_dir, "--image", *paths, "--text", *texts, "--batch-size", "4"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    np.testing.assert_allclose(printed["scores"], whole["scores"], atol=1e-5)


def test_clear_errors(classifier_export, image_files, tmp_path):
    version_dir = classifier_export[1]
    with pytest.raises(ValueError, match="missing \\['text'\\] \\(--text STR\\)"):
        run_saved_model(version_dir, image_paths=image_files)
    with pytest.raises(ValueError, match="Unknown signature.*beam_search"):
        run_saved_model(version_dir, signature="beam_search", image_paths=image_files)
    with pytest.raises(FileNotFoundError, match="No SavedModel"):
        resolve_export_dir(tmp_path)


# ------------------------------------------------------------ a manifest, row by row
TEXTS = ["a red circle", "blue square", "what color is it", "green", "a small yellow triangle"]


@pytest.fixture
def manifest(tmp_path):
    """Five rows (images/0.png .. 4.png with a text each); the third image is not an image when ``bad``."""
    (tmp_path / "images").mkdir()
    rows = []
    for i, data in enumerate(random_images(len(TEXTS), seed=5)):
        (tmp_path / "images" / f"{i}.png").write_bytes(data)
        rows.append(json.dumps({"image": f"images/{i}.png", "text": TEXTS[i], "label": LABELS[i % 3]}))
    path = tmp_path / "manifest.jsonl"
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def test_a_manifest_runs_row_by_row_in_batches_as_one_call_would(classifier_export, manifest):
    version_dir = classifier_export[1]
    records = read_manifest(manifest)
    rows = list(run_saved_model_on_records(os.path.dirname(version_dir), records, batch_size=2))  # 2, 2 and 1
    whole = run_saved_model(version_dir, image_paths=[r.image for r in records], texts=TEXTS)
    assert [r["source"] for r in rows] == [f"{manifest} line {n}" for n in range(1, 6)]
    assert [r["image"] for r in rows] == [r.image for r in records] and [r["text"] for r in rows] == TEXTS
    np.testing.assert_allclose([r["scores"] for r in rows], whole["scores"], atol=1e-5)
    assert [r["classes"] for r in rows] == whole["classes"] and [r["class_ids"] for r in rows] == whole["class_ids"]
    json.dumps(rows)


@pytest.fixture(scope="module")
def small_budget_export(tmp_path_factory):
    """The tiny classifier exported with a request budget of 1,000 pixels: two of random_images' 20x24."""
    from mmzoo.export import export_saved_model
    from tests.export.tiny_models import TinyClassifier

    model = TinyClassifier()
    base = tmp_path_factory.mktemp("budget")
    return model, export_saved_model(model, base / "tiny", max_request_pixels=1000, verify=False, warmup=False)


def test_runs_over_the_request_budget_in_calls_under_it(small_budget_export, manifest):
    """A server refuses one request over max_request_pixels; mmzoo predict splits a run over files instead."""
    import tensorflow_text  # noqa: F401

    model, version_dir = small_budget_export
    records = read_manifest(manifest)
    images = [open(r.image, "rb").read() for r in records]
    served = tf.saved_model.load(version_dir).signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="over max_request_pixels=1000"):
        served(image_bytes=tf.constant(images[:3]), text=tf.constant(TEXTS[:3]))
    expected = np.asarray(model(model.preprocess(tf.constant(images), tf.constant(TEXTS)))["scores"])
    rows = list(run_saved_model_on_records(version_dir, records, batch_size=4))  # calls of 2, 2 and 1
    np.testing.assert_allclose([r["scores"] for r in rows], expected, atol=1e-5)
    assert [r["source"] for r in rows] == [f"{manifest} line {n}" for n in range(1, 6)]
    paths = [r.image for r in records]
    for batch_size in (None, 1, 3):  # calls of 2, 2, 1 (one of the budget); 1 x 5; 2, 1 and 2 (3 cut by the budget)
        whole = run_saved_model(version_dir, image_paths=paths, texts=TEXTS, batch_size=batch_size)
        np.testing.assert_allclose(whole["scores"], expected, atol=1e-5)
        assert whole["class_ids"] == expected.argmax(-1).tolist() and len(whole["classes"]) == 5
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        run_saved_model(version_dir, image_paths=paths, texts=TEXTS, batch_size=0)


def test_within_budget_packs_consecutive_images_and_sends_an_oversized_one_alone():
    from mmzoo.export.predict import _within_budget
    from tests.export.tiny_models import png_header_only

    small, big = random_images(1, size=(10, 10))[0], png_header_only(100, 100)  # 100 and 10,000 pixels
    parts = _within_budget([small, small, big, small, small, small], budget=250)
    assert parts == [slice(0, 2), slice(2, 3), slice(3, 5), slice(5, 6)]
    assert _within_budget([small] * 4, budget=None) == [slice(None)]
    assert _within_budget([b"not an image", small, small, small], budget=250) == [slice(0, 3), slice(3, 4)]


def test_image_pixels_reads_each_format_header():
    from mmzoo.preprocessing.image_header import image_pixels
    from tests.export.tiny_models import encode

    rgb = np.zeros((7, 9, 3), np.uint8)
    data = [encode(rgb, fmt=fmt) for fmt in ("PNG", "JPEG", "GIF", "BMP")] + [b"", b"text"]
    assert image_pixels(tf.constant(data)).numpy().tolist() == [63, 63, 63, 63, 0, 0]


def test_skipped_rows_keep_every_prediction_named_by_its_manifest_line(classifier_export, manifest, capsys):
    from mmzoo.cli import main

    os.remove(os.path.join(os.path.dirname(manifest), "images", "1.png"))
    assert main(["predict", classifier_export[1], "--data", manifest, "--skip-bad"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["source"] for r in printed] == [f"{manifest} line {n}" for n in (1, 3, 4, 5)]
    assert [r["text"] for r in printed] == [TEXTS[i] for i in (0, 2, 3, 4)]


def test_a_row_without_text_gives_its_first_caption_or_a_clear_error(matcher_export, manifest):
    version_dir = matcher_export[1]
    image = read_manifest(manifest)[0].image
    captions = [Record(image=image, captions=["a red circle", "a circle"]), Record(image=image, text="blue")]
    rows = list(run_saved_model_on_records(version_dir, captions))
    assert [r["text"] for r in rows] == ["a red circle", "blue"]
    whole = run_saved_model(version_dir, image_paths=[image, image], texts=["a red circle", "blue"])
    np.testing.assert_allclose([r["score"] for r in rows], whole["score"], atol=1e-5)
    # A signature without text: no text in the rows.
    assert "text" not in next(run_saved_model_on_records(version_dir, captions, signature="embed_image"))
    with pytest.raises(ValueError, match=r"^m.jsonl line 2: the signature reads text, and this row has neither"):
        list(run_saved_model_on_records(version_dir, [captions[1], Record(image=image, source="m.jsonl line 2")]))
    with pytest.raises(ValueError, match="a manifest gives image_bytes and text only"):
        next(run_saved_model_on_records(version_dir, captions, signature="preprocessed"))


def test_mmzoo_predict_data_writes_every_row_whole_or_nothing(classifier_export, manifest, tmp_path, capsys):
    from mmzoo.cli import main

    version_dir, out = classifier_export[1], tmp_path / "predictions.jsonl"
    assert main(["predict", version_dir, "--data", manifest, "--batch-size", "3"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["source"] for r in printed] == [f"{manifest} line {n}" for n in range(1, 6)]

    assert main(["predict", version_dir, "--data", manifest, "--batch-size", "3", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote 5 predictions to {out}"
    assert [json.loads(line) for line in out.read_text().splitlines()] == printed
    assert main(["predict", version_dir, "--data", manifest, "--out", str(out)]) == 2
    assert "exists. Pass --overwrite to replace it." in capsys.readouterr().err

    # The third image is broken: the error names its manifest line and file, and the old file stays whole.
    bad = os.path.join(os.path.dirname(manifest), "images", "2.png")
    with open(bad, "wb") as f:
        f.write(b"not an image")
    before = out.read_text()
    assert main(["predict", version_dir, "--data", manifest, "--out", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"mmzoo predict: error: {manifest} line 3 ({bad}): Cannot decode image: the bytes are not a "
                   "JPEG, PNG, GIF, BMP or WebP file (12 bytes, starting with bytes 6e 6f 74 20 61 6e 20 69).")
    assert out.read_text() == before and sorted(os.listdir(tmp_path)) == ["images", "manifest.jsonl", out.name]

    assert main(["predict", version_dir, "--data", manifest, "--text", "x"]) == 2
    assert "give it without --image and --text" in capsys.readouterr().err
    assert main(["predict", version_dir, "--text", "x", "--out", str(out)]) == 2
    assert "one line per row of --data MANIFEST" in capsys.readouterr().err


def _cli(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1")
    return subprocess.run(list(args), capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.slow
def test_saved_model_cli_show_and_run(classifier_export, image_files, tmp_path):
    version_dir = classifier_export[1]
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = _cli(cli, "show", "--all", "--dir", version_dir)
    assert shown.returncode == 0, shown.stderr[-2000:]
    for name in ("serving_default", "preprocessed"):
        assert f"signature_def['{name}']" in shown.stdout
    assert "inputs['image_bytes']" in shown.stdout and "outputs['classes']" in shown.stdout

    # The stock script does not load the tensorflow-text op library; a server
    # (TF Serving 2.20+) links it. Register it first, then run the stock CLI.
    np.save(tmp_path / "images.npy", np.array([open(image_files[0], "rb").read()], dtype=object))
    run = _cli(
        sys.executable,
        "-c",
        "import sys, tensorflow_text; from tensorflow.python.tools.saved_model_cli import main; "
        "sys.argv[0] = 'saved_model_cli'; sys.exit(main())",
        "run", "--dir", version_dir, "--tag_set", "serve", "--signature_def", "serving_default",
        "--inputs", f"image_bytes={tmp_path / 'images.npy'}", "--input_exprs", "text=['a red circle']",
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Result for output key classes" in run.stdout
    assert any(f"b'{label}'" in run.stdout for label in LABELS)
