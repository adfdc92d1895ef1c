"""mmzoo/models/base.py: the default tokenizer, resolve_tokenizer, normalize_image_size, old configs,
and what MultimodalModel gives every zoo model (its inputs, preprocess, training_example, a reload
under the dtype policy it was built with)."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import mmzoo
from mmzoo.data import make_dataset
from mmzoo.datasets.shapes import shapes_records
from mmzoo.models.base import (
    DEFAULT_SEQUENCE_LENGTH,
    _upgrade_config,
    default_tokenizer,
    dtype_policy,
    normalize_image_size,
    resolve_tokenizer,
)
from mmzoo.preprocessing import TextTokenizer
from mmzoo.training import build_for_data
from tests.harness import assert_reloads_training_state


def _ids(tokenizer, texts):
    return np.asarray(tokenizer(np.array(texts, dtype=object)))


def test_default_tokenizer_is_character_level_for_any_english_text():
    tokenizer = default_tokenizer()
    assert isinstance(tokenizer, TextTokenizer)
    assert DEFAULT_SEQUENCE_LENGTH == 64 and tokenizer.sequence_length == 64
    texts = ["a cat!", "The Zebra ate 42 apples, naïve café-goers said (loudly)?"]
    ids = _ids(tokenizer, texts)
    assert ids.shape == (2, 64)
    for text, row in zip(texts, ids):
        # One token per character; spaces separate words and are not tokens.
        assert np.count_nonzero(row) == len(text.replace(" ", "")), text
        assert tokenizer.unk_id not in row.tolist(), text
    np.testing.assert_array_equal(ids[0, :5], [tokenizer.token_to_id(t) for t in ("a", "c", "##a", "##t", "!")])
    assert tokenizer.detokenize(ids[:1]).numpy()[0].decode() == "a cat !"
    # Characters outside printable ASCII and Latin-1 letters are [UNK]; long texts are cut at 64.
    assert _ids(tokenizer, ["日"])[0, 0] == tokenizer.unk_id
    assert np.count_nonzero(_ids(tokenizer, ["x" * 100])) == 64


def test_default_tokenizer_other_length_and_options():
    tokenizer = default_tokenizer(12, add_start_end=True)
    ids = _ids(tokenizer, ["ab"])
    assert ids.shape == (1, 12)
    assert ids[0, :4].tolist() == [tokenizer.start_id, tokenizer.token_to_id("a"), tokenizer.token_to_id("##b"),
                                   tokenizer.end_id]


def test_resolve_tokenizer_accepts_a_tokenizer_its_config_or_none():
    tokenizer = TextTokenizer(vocabulary=["red", "circle"], mode="word", sequence_length=5)
    assert resolve_tokenizer(tokenizer) is tokenizer
    rebuilt = resolve_tokenizer(keras.saving.serialize_keras_object(tokenizer))
    assert isinstance(rebuilt, TextTokenizer) and rebuilt is not tokenizer
    assert rebuilt.get_vocabulary() == tokenizer.get_vocabulary() and rebuilt.sequence_length == 5
    np.testing.assert_array_equal(_ids(rebuilt, ["a red circle"]), _ids(tokenizer, ["a red circle"]))
    default = resolve_tokenizer(None)
    assert default.get_vocabulary() == default_tokenizer().get_vocabulary() and default.sequence_length == 64
    assert resolve_tokenizer(None, 16, add_start_end=True).sequence_length == 16


@pytest.mark.parametrize("bad, name", [("word", "str"), (["a", "b"], "list"), (3, "int")])
def test_resolve_tokenizer_refuses_anything_else_naming_its_type(bad, name):
    with pytest.raises(TypeError, match=f"Received: tokenizer={name}$"):
        resolve_tokenizer(bad)


def test_normalize_image_size():
    assert normalize_image_size(32) == (32, 32)
    assert normalize_image_size([24, 40]) == (24, 40)
    assert normalize_image_size((8.0, 9)) == (8, 9) and all(type(v) is int for v in normalize_image_size((8.0, 9)))
    for bad in (7, (8, 4), (32, 32, 3), (32,)):
        with pytest.raises(ValueError, match="each at least 8. Received: image_size="):
            normalize_image_size(bad)


def test_old_gated_configs_load_with_the_per_modality_gate():
    old = {"name": "m", "fusion": "gated", "fusion_kwargs": {"units": 8}}
    with pytest.warns(UserWarning, match="gate='unit'"):
        upgraded = _upgrade_config(dict(old))
    assert upgraded["fusion_kwargs"] == {"units": 8, "gate": "modality"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to upgrade: no warning
        for config in ({"fusion": "gated", "fusion_kwargs": {"gate": "unit"}}, {"fusion": "concat"}):
            assert _upgrade_config(dict(config)) == config


def test_a_unimodal_model_preprocesses_and_trains_on_its_own_input_only():
    model = mmzoo.build("image_only_classifier", preset="tiny", label_names=["a", "b"], image_size=(16, 16))
    assert model.model_input_names == ["image"] and model.sequence_length == model.tokenizer.sequence_length
    images = np.random.default_rng(0).integers(0, 255, (2, 20, 20, 3)).astype("uint8")
    inputs = model.preprocess(images, ["a red circle", "a blue square"])
    assert set(inputs) == {"image"} and tuple(inputs["image"].shape) == (2, 16, 16, 3)
    batch = {"image": tf.zeros((2, 16, 16, 3)), "text": tf.constant(["x", "y"]), "label": tf.constant([0, 1])}
    x, y = model.training_example(batch)
    assert set(x) == {"image"} and np.asarray(y).tolist() == [0, 1]
    config = model.get_config()
    assert config["image_size"] == [16, 16] and config["label_names"] == ["a", "b"]
    assert isinstance(config["tokenizer"], dict)


def test_custom_step_models_share_compile_defaults_and_refusals():
    from mmzoo.models.base import CustomStepModel

    dual = mmzoo.build("dual_encoder", preset="tiny")
    multitask = mmzoo.build("multitask_classifier", preset="tiny", num_classes=2)
    assert isinstance(dual, CustomStepModel) and isinstance(multitask, CustomStepModel)
    dual.learning_rate = 5e-4
    dual.compile()
    assert isinstance(dual.optimizer, keras.optimizers.Adam)
    assert float(dual.optimizer.learning_rate) == pytest.approx(5e-4)
    with pytest.raises(ValueError, match="DualEncoder computes its own contrastive loss; compile it without a loss"):
        dual.compile(loss="mse")
    dual.compile(metrics=[keras.metrics.MeanSquaredError()])  # a dual encoder accepts extra metrics
    with pytest.raises(ValueError, match="MultiTaskClassifier reports its per-head metrics itself"):
        multitask.compile(metrics=["accuracy"])


def test_fit_on_a_dataset_does_not_shuffle_it_again():
    # make_dataset shuffles each epoch itself; Keras' default shuffle=True would be ignored for a dataset,
    # with a warning at every fit (as the README's model.fit(make_dataset(...)) would show).
    model = mmzoo.build("concat_classifier", preset="tiny", num_classes=2, image_size=(16, 16))
    model.compile()
    x = model.preprocess(np.zeros((4, 16, 16, 3), "float32"), ["a", "b", "c", "d"])
    ds = tf.data.Dataset.from_tensors((x, np.array([0, 1, 0, 1])))

    def shuffle_warnings(**kwargs):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            history = model.fit(ds, epochs=1, verbose=0, **kwargs).history
        assert np.isfinite(history["loss"][-1])
        return [w for w in caught if "shuffle=True" in str(w.message)]

    assert not shuffle_warnings()
    assert shuffle_warnings(shuffle=True)  # an explicit argument still reaches Keras


def test_records_or_a_path_given_to_fit_evaluate_or_predict_name_make_dataset(tmp_path):
    # Keras refused them as "Unrecognized data type", printing every record.
    records = shapes_records(4, image_size=16, seed=0)
    model = build_for_data("concat_classifier", records, preset="tiny", image_size=(16, 16))
    model.compile()
    with pytest.raises(TypeError, match=r"^fit\(x=\.\.\.\) got 4 records, and Keras takes arrays or a tf\.data\.Dataset: "
                                        r"pass mmzoo\.data\.make_dataset\(records, model, batch_size=32\), "):
        model.fit(records, epochs=1)
    ds = make_dataset(records, model, batch_size=4, training=False)
    with pytest.raises(TypeError, match=r"fit\(validation_data=\.\.\.\) got 4 records.*batch_size=32, training=False\)"):
        model.fit(ds, validation_data=records, epochs=1)
    path = str(tmp_path / "train.jsonl")
    with pytest.raises(TypeError, match=rf"evaluate\(x=\.\.\.\) got a path \('{path}'\).*make_dataset\('{path}', model"):
        model.evaluate(path)
    with pytest.raises(TypeError, match=r"predict\(x=\.\.\.\) got 4 records"):
        model.predict(records)
    # What the message says works, and the model predicts one row per record.
    assert model.predict(ds, verbose=0)["scores"].shape[0] == 4


@pytest.mark.parametrize("name", ["concat_classifier", "text_only_classifier", "transformer_captioner"])
def test_arrays_of_another_size_than_the_models_are_refused_on_every_call(name):
    # Keras checks shapes on the first trace only; predict retraced with relaxed shapes, so a second
    # call with 64x64 images on a 32x32 model failed deep in the graph ("Input to reshape ...").
    entry = mmzoo.get_entry(name)
    model = mmzoo.build(name, preset="tiny", **({"num_classes": 2} if entry.task == "classification" else {}))
    good = model.preprocess(np.zeros((2, 32, 32, 3), "float32"), ["a", "b"])
    first = model.predict(good, verbose=0)
    assert all(np.all(np.isfinite(v)) for v in keras.tree.flatten(first))
    if "image" in model.model_input_names:
        big = {**good, "image": np.zeros((2, 64, 64, 3), "float32")}
        with pytest.raises(ValueError, match=r"^image has shape \(2, 64, 64, 3\), and this model takes \[batch, 32, 32, 3\]: "
                                             r"model\.preprocess\(images=\.\.\.\) decodes and resizes"):
            model.predict(big, verbose=0)
    long = {**good, "token_ids": np.zeros((2, 80), "int32")}
    with pytest.raises(ValueError, match=r"^token_ids has shape \(2, 80\), and this model takes \[batch, 64\]: "
                                         r"model\.preprocess\(texts=\.\.\.\) tokenizes"):
        model.evaluate(long, verbose=0)


@pytest.mark.parametrize("name", ["gated_classifier", "itm_matcher", "lstm_captioner"])
def test_a_mixed_precision_model_reloads_mixed_with_its_loss_scale_optimizer(name, tmp_path):
    # As `mmzoo train --mixed-precision mixed_float16` builds it: under the policy. A reload rebuilt
    # float32 would compile plain Adam and drop the saved LossScaleOptimizer state with a warning.
    records = shapes_records(8, image_size=16, seed=0)
    with dtype_policy("mixed_float16"):
        model = build_for_data(name, records, preset="tiny", overrides={"image_size": 16})
        model.compile()
    assert keras.config.dtype_policy().name == "float32"  # only the model is mixed
    model.fit(make_dataset(records, model, batch_size=4, training=True, seed=0), epochs=1, verbose=0)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    batch = next(iter(make_dataset(records, model, batch_size=4, training=False)))
    x = batch[0] if isinstance(batch, tuple) else batch
    reloaded = assert_reloads_training_state(model, x, tmp_path, atol=1e-3)
    assert reloaded.get_config()["dtype_policy"] == "mixed_float16"
    assert any(layer.compute_dtype == "float16" for layer in reloaded._flatten_layers())


def test_saved_dtype_policy_and_unfrozen_towers_are_checked_on_load():
    model = mmzoo.build("concat_classifier", preset="tiny", num_classes=2, image_size=(16, 16))
    config = model.get_config()
    assert config["dtype_policy"] == "float32" and "unfrozen_towers" not in config  # nothing was unfrozen
    old = {k: v for k, v in config.items() if k != "dtype_policy"}  # files written before: float32
    assert type(model).from_config(old).dtype_policy.name == "float32"
    with dtype_policy("mixed_float16"):  # a float32 model reloads float32 under any global policy
        assert type(model).from_config(config).dtype_policy.name == "float32"
    with pytest.raises(ValueError, match="saved dtype_policy must be a Keras dtype policy name.*'float8'"):
        type(model).from_config({**config, "dtype_policy": "float8"})
    with pytest.raises(ValueError, match=r"unfrozen_towers '\[2\]' does not list one entry per keras_hub backbone"):
        type(model).from_config({**config, "unfrozen_towers": [2]})
