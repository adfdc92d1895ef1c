"""Tests for mmzoo/models/presets.py: image_towers' shape and the zoo entries' tiny presets using the shared text/ViT tables."""

import mmzoo
from mmzoo import registry
from mmzoo.models.presets import DEFAULT_IMAGE, DEFAULT_VIT, TINY_TEXT, TINY_VIT, image_towers


def test_image_towers_default_vit_is_tiny_at_dim_and_copies_its_arguments():
    cnn = {"filters": (8, 16), "dim": 32}
    towers = image_towers(cnn, 24)
    assert towers == {
        "cnn": {"filters": (8, 16), "dim": 32},
        "vit": {"patch_size": 8, "dim": 24, "num_layers": 1, "num_heads": 2},
        "applications": {"backbone": "MobileNetV3Small", "dim": 24},
    }
    assert towers["cnn"] is not cnn
    towers["vit"]["dim"] = 999
    assert TINY_VIT["dim"] == 16  # the shared table is untouched


def test_image_towers_takes_an_explicit_vit_as_a_copy():
    towers = image_towers({"dim": 8}, 64, DEFAULT_VIT)
    assert towers["vit"] == DEFAULT_VIT and towers["vit"] is not DEFAULT_VIT
    assert towers["applications"]["dim"] == 64
    assert DEFAULT_IMAGE["vit"] == DEFAULT_VIT
    assert DEFAULT_IMAGE["applications"] == {"backbone": "MobileNetV3Small", "dim": 128}


def test_every_tiny_preset_uses_the_shared_text_and_vit_tables():
    names = mmzoo.list_models()
    assert len(names) >= 10
    with_text = 0
    for name in names:
        tiny = registry.get_entry(name).preset_kwargs("tiny")
        image = tiny["image_tower_kwargs"]
        assert set(image) == {"cnn", "vit", "applications"}, name
        assert image["vit"] == {**TINY_VIT, "dim": image["applications"]["dim"]}, name
        if "text_tower_kwargs" in tiny:
            assert tiny["text_tower_kwargs"] == TINY_TEXT, name
            with_text += 1
    assert with_text == len(names) - 2  # all but the two captioners
