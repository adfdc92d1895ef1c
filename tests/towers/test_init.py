import keras
import numpy as np
import pytest

from mmzoo.towers import IMAGE_TOWERS, TEXT_TOWERS, build_image_tower, build_text_tower
from tests.harness import assert_model_roundtrip


def test_choices():
    assert sorted(IMAGE_TOWERS) == ["applications", "cnn", "hub", "keras_hub", "vit"]
    assert sorted(TEXT_TOWERS) == ["bilstm", "hub", "keras_hub", "lstm", "transformer"]


def test_unknown_names_list_the_choices():
    with pytest.raises(ValueError, match=r"Did you mean 'vit'.*\['applications', 'cnn', 'hub', 'keras_hub', 'vit'\].*name='vitt'"):
        build_image_tower("vitt", image_size=(16, 16))
    with pytest.raises(ValueError, match=r"\['bilstm', 'hub', 'keras_hub', 'lstm', 'transformer'\].*name='gru'"):
        build_text_tower("gru", vocabulary_size=10, sequence_length=4)


def test_name_kwarg_goes_to_the_tower():
    tower = build_image_tower("vit", image_size=(16, 16), dim=8, num_heads=2, num_layers=1, name="vision")
    assert tower.name == "vision"
    tower = build_text_tower("bilstm", 10, 4, units=4, name="words")
    assert tower.name == "words"
    assert build_text_tower("lstm", 10, 4, units=4).name == "text_tower"
    assert build_image_tower("cnn", image_size=16, filters=(4,)).name == "image_tower"


def test_image_and_text_towers_in_one_model(tmp_path):
    image_tower = build_image_tower("cnn", image_size=(16, 16), filters=(4, 8), dim=8)
    text_tower = build_text_tower("transformer", 20, 6, dim=8, num_layers=1, num_heads=2)
    image = keras.Input((16, 16, 3), name="image")
    token_ids = keras.Input((6,), dtype="int32", name="token_ids")
    fused = keras.layers.Concatenate()([image_tower(image)["pooled"], text_tower(token_ids)["pooled"]])
    model = keras.Model({"image": image, "token_ids": token_ids}, keras.layers.Dense(2)(fused))
    inputs = {
        "image": np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype("float32"),
        "token_ids": np.array([[4, 5, 0, 0, 0, 0], [6, 7, 8, 9, 0, 0]], "int32"),
    }
    assert_model_roundtrip(model, inputs, tmp_path)
