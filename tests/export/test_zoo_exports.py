"""Export of the registered zoo entries: signatures per task, outputs equal to Keras.

A classifier and a captioner run by default (matching is covered by the tiny
dual encoder in test_saved_model.py); every other registered entry runs in the
slow tier, so the two tiers together export each entry once.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import mmzoo
from mmzoo.export import export_saved_model
from mmzoo.registry import get_entry
from tests.export.tiny_models import random_images

TEXTS = ["a red circle", "a big blue square on the left"]
EXPECTED_SIGNATURES = {
    "classification": {"serving_default", "preprocessed"},
    "matching": {"serving_default", "preprocessed"},
    "captioning": {"serving_default", "beam_search", "preprocessed"},
}


def _check_entry(name, tmp_path):
    labels = {"num_classes": 3} if get_entry(name).task == "classification" else {}
    model = mmzoo.build(name, preset="tiny", **labels)
    version_dir = export_saved_model(model, tmp_path / name, beam_width=2, verify=False)
    loaded = tf.saved_model.load(version_dir)
    assert EXPECTED_SIGNATURES[model.task] <= set(loaded.signatures)
    images = random_images(2, size=(40, 30), seed=3)
    raw = tf.constant(images)
    inputs = model.preprocess(raw, tf.constant(TEXTS))
    fn_inputs = {k: tf.constant(v) for k, v in (("image_bytes", images), ("text", TEXTS))}
    sig = loaded.signatures["serving_default"]
    fn_inputs = {k: v for k, v in fn_inputs.items() if k in sig.structured_input_signature[1]}
    out = sig(**fn_inputs)

    if model.task == "classification":
        expected = keras.ops.convert_to_numpy(model(inputs, training=False)["scores"])
        if expected.shape[-1] == 1:  # binary: [1 - p, p]
            expected = np.concatenate([1 - expected, expected], -1)
        np.testing.assert_allclose(out["scores"].numpy(), expected, atol=1e-4)
        assert [c.decode() for c in out["classes"].numpy()] == [model.label_names[i] for i in expected.argmax(-1)]
    elif model.task == "matching":
        expected = keras.ops.convert_to_numpy(model(inputs, training=False)["score"]).reshape(-1)
        np.testing.assert_allclose(out["score"].numpy(), expected, atol=1e-4)
        if hasattr(model, "embed_image"):
            emb = loaded.signatures["embed_image"](image_bytes=raw)["embedding"].numpy()
            np.testing.assert_allclose(emb, keras.ops.convert_to_numpy(model.embed_image(inputs["image"])), atol=1e-4)
            temb = loaded.signatures["embed_text"](text=tf.constant(TEXTS))["embedding"].numpy()
            np.testing.assert_allclose(temb, keras.ops.convert_to_numpy(model.embed_text(inputs["token_ids"])), atol=1e-4)
    else:
        for signature, kwargs in (("serving_default", {"method": "greedy"}), ("beam_search", {"method": "beam", "beam_width": 2})):
            out = loaded.signatures[signature](image_bytes=raw)
            expected = model.generate(inputs["image"], **kwargs)
            captions = model.tokenizer.detokenize(expected["token_ids"]).numpy().tolist()
            assert out["caption"].numpy().tolist() == captions
            np.testing.assert_allclose(out["score"].numpy(), np.asarray(expected["score"]), atol=1e-4)
    return model, loaded


DEFAULT_TIER = ["concat_classifier", "lstm_captioner"]


@pytest.mark.parametrize("name", DEFAULT_TIER)
def test_one_entry_per_task(name, tmp_path):
    _check_entry(name, tmp_path)


def test_the_default_tier_entries_are_registered():
    # test_every_other_registered_entry_exports leaves these out: they must be real entries.
    assert set(DEFAULT_TIER) <= set(mmzoo.list_models())


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in mmzoo.list_models() if n not in DEFAULT_TIER])
def test_every_other_registered_entry_exports(name, tmp_path):
    _check_entry(name, tmp_path)
