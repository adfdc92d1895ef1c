"""run_saved_model (``mmzoo predict``) and the saved_model_cli consumer."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from mmzoo.export import resolve_export_dir, run_saved_model
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


def test_clear_errors(classifier_export, image_files, tmp_path):
    version_dir = classifier_export[1]
    with pytest.raises(ValueError, match="missing \\['text'\\] \\(--text STR\\)"):
        run_saved_model(version_dir, image_paths=image_files)
    with pytest.raises(ValueError, match="Unknown signature.*beam_search"):
        run_saved_model(version_dir, signature="beam_search", image_paths=image_files)
    with pytest.raises(FileNotFoundError, match="No SavedModel"):
        resolve_export_dir(tmp_path)


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
