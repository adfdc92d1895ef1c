"""`build_fused_trunk`: the inputs + towers + fusion shared by the classifiers
and the multi-task classifier."""

import keras
import numpy as np
import pytest

from mmzoo.layers.classification_head import ClassificationHead
from mmzoo.models.classifiers import TINY_IMAGE, TINY_TEXT, MultimodalClassifier
from mmzoo.models.trunk import TRUNK_FUSIONS, build_fused_trunk
from mmzoo.preprocessing import TextTokenizer
from mmzoo.towers import IMAGE_TOWERS, TEXT_TOWERS, select_tower_kwargs


def _tokenizer():
    return TextTokenizer(vocabulary=["what", "color", "is", "the", "circle", "red"], mode="word", sequence_length=6)


def _trunk(fusion, **kw):
    return build_fused_trunk(
        fusion=fusion,
        tokenizer=_tokenizer(),
        image_size=(32, 32),
        image_tower_kwargs=select_tower_kwargs("cnn", TINY_IMAGE, IMAGE_TOWERS),
        text_tower_kwargs=select_tower_kwargs("lstm", TINY_TEXT, TEXT_TOWERS),
        **kw,
    )


@pytest.mark.parametrize("fusion", TRUNK_FUSIONS)
def test_each_fusion_gives_inputs_and_features(fusion):
    trunk = _trunk(fusion, late_outputs=5 if fusion == "late" else None)
    expected = {"image_only": ["image"], "text_only": ["token_ids"]}.get(fusion, ["image", "token_ids"])
    assert sorted(trunk.inputs) == sorted(expected)
    assert trunk.inputs.get("token_ids") is None or tuple(trunk.inputs["token_ids"].shape) == (None, 6)
    model = keras.Model(trunk.inputs, trunk.features)
    x = {"image": np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32"),
         "token_ids": np.array([[1, 2, 3, 4, 0, 0]] * 3, "int32")}
    out = np.asarray(model({k: x[k] for k in trunk.inputs}))
    assert out.shape[0] == 3 and out.ndim == 2 and np.all(np.isfinite(out))
    if fusion == "late":
        assert out.shape[1] == 5
    names = {layer.name for layer in model.layers}
    assert ("image_tower" in names) == ("image" in trunk.inputs)
    assert ("text_tower" in names) == ("token_ids" in trunk.inputs)
    assert ("fusion" in names) == (fusion not in ("image_only", "text_only"))


def test_fusion_defaults_are_filled_in_and_return_gates_is_not_kept():
    assert _trunk("gated").fusion_kwargs == {"units": 64, "gate": "unit"}
    assert _trunk("gated", fusion_kwargs={"units": 8}).fusion_kwargs == {"units": 8, "gate": "unit"}
    assert _trunk("cross_attention").fusion_kwargs == {"num_heads": 2, "key_dim": 32}
    assert _trunk("concat").fusion_kwargs == {}


def test_bad_fusion_and_late_without_outputs_are_clear_errors():
    with pytest.raises(ValueError, match="Received: fusion='sum'"):
        _trunk("sum")
    with pytest.raises(ValueError, match="late_outputs.*Received: late_outputs=None"):
        _trunk("late")


@pytest.mark.parametrize("fusion", ["gated", "late"])
def test_classifier_is_the_trunk_plus_its_head(fusion):
    """MultimodalClassifier is built from the trunk: same layers, same weight shapes."""
    tok = _tokenizer()
    clf = MultimodalClassifier(
        fusion=fusion, label_names=["a", "b", "c"], tokenizer=tok, image_size=(32, 32),
        image_tower_kwargs=TINY_IMAGE, text_tower_kwargs=TINY_TEXT, hidden_units=16,
    )
    trunk = build_fused_trunk(
        fusion=fusion, tokenizer=tok, image_size=(32, 32),
        image_tower_kwargs=select_tower_kwargs("cnn", TINY_IMAGE, IMAGE_TOWERS),
        text_tower_kwargs=select_tower_kwargs("lstm", TINY_TEXT, TEXT_TOWERS),
        late_outputs=3 if fusion == "late" else None,
        normalize_modalities=True,
        drop_unused_outputs=True,
    )
    head = (ClassificationHead(3, hidden_units=0, from_logits_input=True, name="scores") if fusion == "late"
            else ClassificationHead(3, hidden_units=16, dropout=0.1, name="scores"))
    reference = keras.Model(trunk.inputs, {"scores": head(trunk.features)})
    assert [l.name for l in clf.layers] == [l.name for l in reference.layers]
    assert [tuple(w.shape) for w in clf.weights] == [tuple(w.shape) for w in reference.weights]
    assert clf.get_config()["fusion_kwargs"] == trunk.fusion_kwargs
    assert {"image_norm", "text_norm"} <= {l.name for l in clf.layers}


def test_normalize_modalities_puts_unit_scale_pooled_vectors_into_pooled_fusions():
    tok = _tokenizer()
    trunk = build_fused_trunk(
        fusion="concat", tokenizer=tok, image_size=(32, 32),
        image_tower_kwargs=select_tower_kwargs("cnn", TINY_IMAGE, IMAGE_TOWERS),
        text_tower_kwargs=select_tower_kwargs("lstm", TINY_TEXT, TEXT_TOWERS),
        normalize_modalities=True,
    )
    model = keras.Model(trunk.inputs, trunk.features)
    rng = np.random.default_rng(0)
    x = {"image": rng.uniform(0, 255, (4, 32, 32, 3)).astype("float32"),
         "token_ids": rng.integers(1, tok.vocabulary_size, (4, tok.sequence_length)).astype("int32")}
    fused = np.asarray(model(x))
    image_dim = int(trunk.image_features["pooled"].shape[-1])
    for part in (fused[:, :image_dim], fused[:, image_dim:]):  # each modality: mean 0, variance 1
        np.testing.assert_allclose(part.mean(-1), 0.0, atol=1e-4)
        np.testing.assert_allclose(part.var(-1), 1.0, atol=5e-2)
    # Cross-attention fuses tokens, not pooled vectors: no norm layers there.
    ca = build_fused_trunk(fusion="cross_attention", tokenizer=tok, image_size=(32, 32),
                           image_tower_kwargs=select_tower_kwargs("cnn", TINY_IMAGE, IMAGE_TOWERS),
                           text_tower_kwargs=select_tower_kwargs("lstm", TINY_TEXT, TEXT_TOWERS),
                           normalize_modalities=True)
    assert "image_norm" not in {l.name for l in keras.Model(ca.inputs, ca.features).layers}
