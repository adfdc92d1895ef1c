"""Export of the registered zoo entries: signatures per task, outputs equal to Keras, and the
tf.Example signatures (``input_type="tf_example"``) equal to the raw ones.

One entry per head runs by default (a multi-class and a binary classifier, a matcher, a captioner);
every other registered entry runs in the slow tier, so the two tiers together export each entry once.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import mmzoo
from mmzoo.export import export_saved_model
from mmzoo.export.examples import EXAMPLE_SUFFIX, resolve_feature_keys, serialize_example
from mmzoo.registry import get_entry
from tests.export.tiny_models import random_images

TEXTS = ["a red circle", "a big blue square on the left"]
EXPECTED_SIGNATURES = {
    "classification": {"serving_default", "preprocessed"},
    "matching": {"serving_default", "preprocessed"},
    "captioning": {"serving_default", "beam_search", "preprocessed"},
}


def _check_entry(name, tmp_path, **build_kwargs):
    if not build_kwargs and get_entry(name).task == "classification":
        build_kwargs = {"num_classes": 3}
    model = mmzoo.build(name, preset="tiny", **build_kwargs)
    version_dir = export_saved_model(model, tmp_path / name, beam_width=2, input_type="tf_example", verify=False,
                                     warmup=False)
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
            answer = out if signature == "serving_default" else loaded.signatures[signature](image_bytes=raw)
            expected = model.generate(inputs["image"], **kwargs)
            captions = model.tokenizer.detokenize(expected["token_ids"]).numpy().tolist()
            assert answer["caption"].numpy().tolist() == captions
            np.testing.assert_allclose(answer["score"].numpy(), np.asarray(expected["score"]), atol=1e-4)
    _check_tf_examples(model, loaded, fn_inputs, out)
    return model, loaded


def _check_tf_examples(model, loaded, feed, raw):
    """The tf.Example signatures give serving_default's outputs (``raw``, for ``feed``); classify / regress per head."""
    examples = [serialize_example({{"image_bytes": "image/encoded", "text": "text"}[k]: v.numpy()[i]
                                   for k, v in feed.items()}) for i in range(2)]
    parsed = loaded.signatures["tf_example"](examples=tf.constant(examples))
    for key in raw:
        np.testing.assert_array_equal(parsed[key].numpy(), raw[key].numpy())
    extra = set(loaded.signatures) & {"classify", "regress"}
    if model.task == "classification":
        assert extra == {"classify"}
        out = loaded.signatures["classify"](inputs=tf.constant(examples))
        np.testing.assert_array_equal(out["scores"].numpy(), raw["scores"].numpy())
        assert out["classes"].numpy().tolist() == [[n.encode() for n in model.label_names]] * 2
    elif model.task == "matching":
        assert extra == {"regress"}
        out = loaded.signatures["regress"](inputs=tf.constant(examples))
        np.testing.assert_array_equal(out["outputs"].numpy(), raw["score"].numpy())
    else:
        assert not extra and set(raw) == {"caption", "score"}
    _check_variants(loaded, feed)


def _check_variants(loaded, feed):
    """Each ``NAME_tf_example`` (embed_image / embed_text / beam_search) equals ``NAME`` on Examples
    holding only that signature's feature; every raw signature but serving_default has one."""
    keys = resolve_feature_keys()
    raw_names = set(loaded.signatures) - {"serving_default", "preprocessed", "tf_example", "classify", "regress"}
    variants = {n for n in raw_names if n.endswith(EXAMPLE_SUFFIX)}
    assert {v.removesuffix(EXAMPLE_SUFFIX) for v in variants} == raw_names - variants
    for variant in variants:
        sig = loaded.signatures[variant.removesuffix(EXAMPLE_SUFFIX)]
        own = {k: v for k, v in feed.items() if k in sig.structured_input_signature[1]}
        examples = [serialize_example({keys[k]: v.numpy()[i] for k, v in own.items()}) for i in range(2)]
        raw, parsed = sig(**own), loaded.signatures[variant](examples=tf.constant(examples))
        for key in raw:
            np.testing.assert_array_equal(parsed[key].numpy(), raw[key].numpy())


# One entry per head; the binary classifier's classify signature answers both label names.
DEFAULT_TIER = {
    "concat_classifier": {},
    "gated_classifier": {"label_names": ["no", "yes"], "mode": "binary"},
    "itm_matcher": {},
    "lstm_captioner": {},
}


@pytest.mark.parametrize("name", sorted(DEFAULT_TIER))
def test_one_entry_per_head(name, tmp_path):
    model, _ = _check_entry(name, tmp_path, **DEFAULT_TIER[name])
    assert model.task in ("classification", "matching", "captioning")


def test_the_default_tier_entries_are_registered():
    # test_every_other_registered_entry_exports leaves these out: they must be real entries.
    assert set(DEFAULT_TIER) <= set(mmzoo.list_models())


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in mmzoo.list_models() if n not in DEFAULT_TIER])
def test_every_other_registered_entry_exports(name, tmp_path):
    _check_entry(name, tmp_path)
