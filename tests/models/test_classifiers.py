import keras
import numpy as np
import pytest

import mmzoo
from mmzoo.models.classifiers import TINY_IMAGE, TINY_TEXT, MultimodalClassifier, select_tower_kwargs
from mmzoo.preprocessing import TextTokenizer
from tests.harness import assert_model_roundtrip

VOCAB = ["what", "color", "is", "the", "circle", "square", "red", "blue"]


def _tokenizer():
    return TextTokenizer(vocabulary=VOCAB, mode="word", sequence_length=8)


def _inputs(model, n=4):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (n, 40, 48, 3)).astype("uint8")
    return model.preprocess(images=images, texts=["what color is the circle"] * n)


def _build(fusion, **kw):
    kw.setdefault("label_names", ["red", "blue", "green"])
    return MultimodalClassifier(
        fusion=fusion,
        tokenizer=_tokenizer(),
        image_size=(32, 32),
        image_tower_kwargs=TINY_IMAGE,
        text_tower_kwargs=TINY_TEXT,
        hidden_units=16,
        **kw,
    )


@pytest.mark.parametrize("fusion", ["concat", "gated", "cross_attention", "late", "image_only", "text_only"])
def test_each_fusion_fits_and_round_trips(fusion, tmp_path):
    model = _build(fusion)
    model.compile()
    x = _inputs(model)
    assert set(x) == set(model.model_input_names)
    if fusion == "image_only":
        assert model.model_input_names == ["image"]
    if fusion == "text_only":
        assert model.model_input_names == ["token_ids"]
    history = model.fit(x, np.array([0, 1, 2, 1]), epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    scores = model(x)["scores"]
    assert scores.shape == (4, 3)
    np.testing.assert_allclose(np.sum(scores, axis=-1), 1.0, atol=1e-5)
    reloaded = assert_model_roundtrip(model, x, tmp_path)
    assert reloaded.label_names == ["red", "blue", "green"]
    assert reloaded.tokenizer.get_config()["vocabulary"] == model.tokenizer.get_config()["vocabulary"]
    assert reloaded.fusion == fusion


def test_multilabel_and_binary_modes():
    multi = _build("concat", mode="multilabel")
    multi.compile()
    x = _inputs(multi)
    y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]], "float32")
    multi.fit(x, y, verbose=0)
    scores = np.asarray(multi(x)["scores"])
    assert scores.shape == (4, 3) and not np.allclose(scores.sum(-1), 1.0)

    binary = _build("gated", mode="binary", label_names=["no", "yes"])
    binary.compile()
    batch = {"image": x["image"], "text": np.array(["what color is the circle"] * 4), "label": np.array([0, 1, 1, 0])}
    bx, by = binary.training_example(batch)
    assert by.shape == (4, 1)
    binary.fit(bx, by, verbose=0)
    assert binary(bx)["scores"].shape == (4, 1)


def test_gated_classifier_exposes_gates():
    model = _build("gated")
    gates = np.asarray(model.fusion_gates(_inputs(model)))
    assert gates.shape == (4, 2)
    np.testing.assert_allclose(gates.sum(-1), 1.0, atol=1e-5)
    per_unit = np.asarray(model.fusion_gates(_inputs(model), per_unit=True))
    assert per_unit.shape == (4, 2, model.fusion_kwargs["units"])
    np.testing.assert_allclose(per_unit.mean(-1), gates, atol=1e-6)
    with pytest.raises(ValueError, match="fusion='gated'"):
        _build("concat").fusion_gates(_inputs(model))


@pytest.mark.parametrize(
    "build, match",
    [
        pytest.param(lambda: _build("sum"), "fusion must be one of", id="unknown-fusion"),
        pytest.param(lambda: _build("concat", num_classes=5), "disagree", id="num-classes-vs-label-names"),
        pytest.param(lambda: _build("concat", label_names=["a", "a"]), "unique", id="repeated-label-names"),
        pytest.param(lambda: mmzoo.build("gated_clasifier"), "Unknown model name", id="misspelt-model-name"),
    ],
)
def test_bad_arguments_are_clear(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_preset_tower_kwargs_follow_the_chosen_tower():
    assert select_tower_kwargs("transformer", TINY_TEXT, {"lstm": 0, "bilstm": 0, "transformer": 0}) == TINY_TEXT["transformer"]
    assert select_tower_kwargs("lstm", {"units": 8}, {"lstm": 0}) == {"units": 8}
    model = mmzoo.build(
        "concat_classifier", preset="tiny", text_tower="transformer", tokenizer=_tokenizer(), num_classes=2
    )
    assert model.text_tower_kwargs == TINY_TEXT["transformer"]
    assert isinstance(model, keras.Model)


@pytest.mark.parametrize("name", ["concat_classifier", "gated_classifier", "cross_attention_classifier",
                                  "late_fusion_classifier"])
def test_every_weight_gets_a_gradient(name):
    # The default preset's CNN has a token projection (cross-attention reads
    # it) and a pooled projection (the pooled fusions read it); each model
    # keeps only the tower outputs its fusion reads.
    import warnings

    import mmzoo

    model = mmzoo.build(name, preset="default", num_classes=3)
    model.compile()
    rng = np.random.default_rng(0)
    x = {"image": rng.uniform(0, 255, (4, 64, 64, 3)).astype("float32"),
         "token_ids": rng.integers(1, model.tokenizer.vocabulary_size, (4, model.sequence_length)).astype("int32")}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, np.array([0, 1, 2, 0]), epochs=1, verbose=0)
    assert not [str(w.message) for w in caught if "Gradients do not exist" in str(w.message)]
    full = mmzoo.build(name, preset="default", num_classes=3, drop_unused_outputs=False)
    assert model.count_params() < full.count_params()
