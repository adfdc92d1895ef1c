"""mmzoo/reload_check.py: exports reloaded as TF Serving would, in a process without Keras or mmzoo models.

The exports here are small hand-written SavedModels with the zoo's signature names (a classifier, a
matcher, a captioner that call an image bright or dark), so a fresh ``python -m mmzoo.reload_check``
runs in seconds and every printed mark can be checked.
"""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from mmzoo.reload_check import _mark, _normalize, _same_caption, main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STRINGS = tf.TensorSpec([None], tf.string)


def test_normalize_and_same_caption():
    assert _normalize("  A Red-Circle, left of   the square. ") == "a red circle left of the square"
    assert _normalize(42) == "42"
    assert _same_caption("a red circle.", ["A blue square", "a RED circle"])
    assert not _same_caption("a red circle", ["a red square"])
    assert not _same_caption("a red circle", [])
    assert (_mark(True), _mark(False)) == ("✓", "✗")


def _brightness(image_bytes):
    """Mean pixel value in [0, 1] of each encoded image."""
    pixels = tf.map_fn(lambda b: tf.cast(tf.io.decode_png(b, channels=3), tf.float32), image_bytes,
                       fn_output_signature=tf.TensorSpec([None, None, 3], tf.float32))
    return tf.reduce_mean(pixels, axis=[1, 2, 3]) / 255.0


def _caption_of(image_bytes, prefix):
    bright = _brightness(image_bytes) > 0.5
    return {"caption": tf.where(bright, prefix + " bright image", prefix + " dark image"),
            "score": tf.zeros_like(_brightness(image_bytes))}


def _save_exports(base):
    classifier = tf.Module()

    @tf.function(input_signature=[STRINGS, STRINGS])
    def classify(image_bytes, text):
        p = _brightness(image_bytes)
        return {"classes": tf.where(p > 0.5, "bright", "dark"), "scores": tf.stack([p, 1 - p], axis=1),
                "n_texts": tf.shape(text)[0]}

    tf.saved_model.save(classifier, str(base / "classifier"), signatures={"serving_default": classify})

    matcher = tf.Module()

    @tf.function(input_signature=[STRINGS])
    def embed_image(image_bytes):
        p = _brightness(image_bytes)
        return {"embedding": tf.stack([p - 0.5, 0.5 - p], axis=1)}

    @tf.function(input_signature=[STRINGS])
    def embed_text(text):
        bright = tf.cast(tf.strings.regex_full_match(text, ".*bright.*"), tf.float32)
        return {"embedding": tf.stack([bright - 0.5, 0.5 - bright], axis=1)}

    tf.saved_model.save(matcher, str(base / "matcher"),
                        signatures={"embed_image": embed_image, "embed_text": embed_text})

    captioner = tf.Module()
    greedy = tf.function(lambda image_bytes: _caption_of(image_bytes, "a"), input_signature=[STRINGS])
    beam = tf.function(lambda image_bytes: _caption_of(image_bytes, "one"), input_signature=[STRINGS])
    tf.saved_model.save(captioner, str(base / "captioner"), signatures={"serving_default": greedy, "beam_search": beam})


def _png(path, value):
    buffer = io.BytesIO()
    Image.fromarray(np.full((6, 6, 3), value, np.uint8)).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    return str(path)


@pytest.fixture(scope="module")
def request_file(tmp_path_factory):
    base = tmp_path_factory.mktemp("reload_check")
    _save_exports(base)
    request = {
        "classifier": str(base / "classifier"),
        "matcher": str(base / "matcher"),
        "captioner": str(base / "captioner"),
        "images": [_png(base / "white.png", 250), _png(base / "black.png", 5)],
        "questions": ["how bright is it", "how bright is it"],
        "answers": ["bright", "bright"],  # the second answer is wrong on purpose: a ✗
        "references": ["a bright image", "a grey image"],
        "captions": [["A bright image."], ["a grey image", "a dark image"]],
        "candidates": ["a bright image", "a dark image"],
    }
    path = base / "request.json"
    path.write_text(json.dumps(request))
    return path


def test_reload_check_prints_marked_predictions_in_a_fresh_process(request_file):
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONIOENCODING": "utf-8"}
    proc = subprocess.run([sys.executable, "-m", "mmzoo.reload_check", str(request_file)], capture_output=True,
                          text=True, encoding="utf-8", env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "✓ question   'how bright is it' -> bright (p=0.98; truth: bright)" in out
    assert "✗ question   'how bright is it' -> dark (p=0.98; truth: bright)" in out
    assert out.count("✓ best match 'a bright image' (of 2 captions)") == 1
    assert out.count("✓ best match 'a dark image' (of 2 captions)") == 1
    # Captions compare normalised, against every caption of the image.
    assert "✓ greedy     'a bright image'" in out and "✓ greedy     'a dark image'" in out
    assert "✗ beam       'one bright image'" in out and "✗ beam       'one dark image'" in out
    assert "reference  'a grey image' (and 1 more)" in out and "reference  'a bright image'\n" in out
    assert out.count("✓") == 5 and out.count("✗") == 3


def test_reload_check_fails_when_mmzoo_model_code_is_loaded(request_file, capsys):
    """In this process (pytest, where mmzoo's model code is imported) the same check must refuse."""
    import mmzoo.models  # noqa: F401

    assert main([str(request_file)]) == 1
    captured = capsys.readouterr()
    assert "image " in captured.out  # it ran the exports first
    assert "error: the reload process imported ['mmzoo." in captured.err
