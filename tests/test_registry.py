"""One registry-driven test over every zoo entry at its `tiny` preset:
build, fit one step on real built-in data, `.keras` round trip with
`safe_mode=True`, identical outputs."""

import keras
import numpy as np
import pytest

import mmzoo
from mmzoo.data import make_dataset
from mmzoo.datasets.shapes import shapes_label_names, shapes_records
from mmzoo.registry import get_entry, register_model
from tests.harness import assert_reloads_training_state

EXPECTED = {
    "concat_classifier",
    "gated_classifier",
    "cross_attention_classifier",
    "late_fusion_classifier",
    "image_only_classifier",
    "text_only_classifier",
}


def test_list_models_is_sorted_and_has_the_zoo():
    names = mmzoo.list_models()
    assert names == sorted(names)
    assert EXPECTED <= set(names)


@pytest.fixture(scope="module")
def records():
    return shapes_records(8, image_size=32, seed=1)


@pytest.mark.parametrize("name", mmzoo.list_models())
def test_every_entry_tiny_builds_fits_and_round_trips(name, records, tmp_path):
    entry = get_entry(name)
    assert "tiny" in entry.presets and entry.description
    labels = {"label_names": shapes_label_names("question")} if entry.task == "classification" else {}
    model = mmzoo.build(name, preset="tiny", **labels)
    assert isinstance(model, keras.Model) and model.task == entry.task
    model.compile()
    ds = make_dataset(records, model, batch_size=4, training=True, seed=0)
    history = model.fit(ds.take(1), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    batch = next(iter(make_dataset(records, model, batch_size=4, training=False)))
    x = batch[0] if isinstance(batch, tuple) else batch
    # Compiled as saved, with its optimizer state (Adam's moments and step), without a warning.
    assert_reloads_training_state(model, x, tmp_path)
    assert int(np.asarray(model.optimizer.iterations)) == 1


def test_unknown_names_and_presets_are_clear_errors():
    with pytest.raises(ValueError, match="Unknown model name.*Received: name='nope'"):
        mmzoo.build("nope")
    with pytest.raises(ValueError, match="Unknown preset.*Received: preset='huge'"):
        mmzoo.build("concat_classifier", preset="huge")


@pytest.mark.parametrize("name", mmzoo.list_models())
def test_a_misspelled_argument_is_refused_before_building(name):
    # Keras's Functional constructor drops unknown keywords, so this built the default model.
    entry = get_entry(name)
    labels = {"num_classes": 2} if entry.task == "classification" else {}
    with pytest.raises(TypeError, match=rf"{entry.model_class.__name__} got an unexpected argument 'learnig_rate' "
                                        r"\(did you mean 'learning_rate'\?\)\. Its arguments: .*learning_rate"):
        mmzoo.build(name, preset="tiny", learnig_rate=1e-3, **labels)


def test_keras_constructor_arguments_still_reach_the_model():
    entry = get_entry("transformer_captioner")   # mmzoo.build's own first argument is `name`
    model = entry.builder(**entry.preset_kwargs("tiny"), name="mine", trainable=False)
    assert model.name == "mine" and not model.trainable


def test_register_model_requires_a_tiny_preset_and_a_known_task():
    with pytest.raises(ValueError, match="tiny"):
        register_model("x_entry", description="x", task="classification", presets={"default": {}})
    with pytest.raises(ValueError, match="Received: task='regression'"):
        register_model("x_entry", description="x", task="regression", presets={"tiny": {}})


def test_load_model_registers_the_zoo_and_uses_safe_mode(tmp_path):
    model = mmzoo.build("text_only_classifier", preset="tiny", num_classes=3)
    path = str(tmp_path / "m.keras")
    model.save(path)
    reloaded = mmzoo.load_model(path)
    assert type(reloaded) is type(model) and reloaded.label_names == model.label_names


def test_register_preset_adds_a_datasets_recipe_and_refuses_conflicts():
    from mmzoo.registry import register_preset

    entry = get_entry("dual_encoder")
    assert "shapes" in entry.presets and "tokenizer" in entry.presets["shapes"]  # mmzoo.datasets.shapes's recipe
    register_preset("dual_encoder", "shapes", entry.presets["shapes"])  # the same recipe again: accepted
    with pytest.raises(ValueError, match="already has a different preset 'shapes'"):
        register_preset("dual_encoder", "shapes", {"embedding_dim": 8})
    with pytest.raises(ValueError, match="no zoo entry named 'no_such_entry'"):
        register_preset("no_such_entry", "shapes", {})


def test_importing_mmzoo_loads_neither_tensorflow_nor_the_models():
    import subprocess
    import sys

    code = "import sys, mmzoo, mmzoo.registry; print(sorted(m for m in ('tensorflow', 'keras', 'mmzoo.models') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_register_model_class_binds_arguments_and_reads_the_task_from_the_class():
    from mmzoo.models.classifiers import MultimodalClassifier
    from mmzoo.registry import _REGISTRY, register_model_class

    builder = register_model_class("x_late_classifier", MultimodalClassifier, description="late, once more",
                                   presets={"tiny": {"image_size": (16, 16)}}, fusion="late")
    try:
        entry = get_entry("x_late_classifier")
        assert (entry.task, entry.model_class, entry.builder) == ("classification", MultimodalClassifier, builder)
        assert builder.__name__ == "x_late_classifier" and "mmzoo.build('x_late_classifier'" in builder.__doc__
        model = mmzoo.build("x_late_classifier", preset="tiny", num_classes=2)
        assert (type(model), model.fusion, model.image_size) == (MultimodalClassifier, "late", (16, 16))
    finally:
        del _REGISTRY["x_late_classifier"]
