import keras
import numpy as np
import pytest

from mmzoo.layers.cross_attention_fusion import CrossAttentionFusion
from tests.harness import run_layer_checks

B, LT, DT, LI, DI = 2, 5, 8, 6, 4


def _tokens():
    rng = np.random.default_rng(4)
    text = rng.normal(size=(B, LT, DT)).astype("float32")
    image = rng.normal(size=(B, LI, DI)).astype("float32")
    text_mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    image_mask = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], bool)
    return text, image, text_mask, image_mask


def test_standard_checks_dict_with_masks(tmp_path):
    text, image, text_mask, image_mask = _tokens()
    run_layer_checks(
        lambda: CrossAttentionFusion(num_heads=2, key_dim=4, dropout=0.1),
        {"text": text, "image": image, "text_mask": text_mask, "image_mask": image_mask},
        tmp_path=tmp_path,
        expected_output_shape=(B, DT),
    )


def test_standard_checks_list_with_keyword_masks_bidirectional(tmp_path):
    text, image, text_mask, image_mask = _tokens()
    run_layer_checks(
        lambda: CrossAttentionFusion(num_heads=2, key_dim=4, bidirectional=True, pooling="max"),
        [text, image],
        call_kwargs={"text_mask": text_mask, "image_mask": image_mask},
        tmp_path=tmp_path,
        expected_output_shape=(B, DT + DI),
    )


def test_standard_checks_attention_scores(tmp_path):
    text, image, text_mask, _ = _tokens()
    pooled, scores = run_layer_checks(
        lambda: CrossAttentionFusion(
            num_heads=2, key_dim=4, bidirectional=True, return_attention_scores=True, intermediate_dim=6
        ),
        {"text": text, "image": image, "text_mask": text_mask},
        tmp_path=tmp_path,
        expected_output_shape=(
            (B, DT + DI),
            {"text_to_image": (B, 2, LT, LI), "image_to_text": (B, 2, LI, LT)},
        ),
    )
    # Image queries never attend to padded text keys.
    np.testing.assert_allclose(np.asarray(scores["image_to_text"])[0, :, :, 3:], 0.0, atol=1e-7)
    np.testing.assert_allclose(np.asarray(scores["text_to_image"]).sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("pooling", ["mean", "max", "first"])
def test_masked_positions_do_not_change_output(bidirectional, pooling):
    text, image, text_mask, image_mask = _tokens()
    layer = CrossAttentionFusion(num_heads=2, key_dim=4, bidirectional=bidirectional, pooling=pooling)
    inputs = {"text": text, "image": image, "text_mask": text_mask, "image_mask": image_mask}
    reference = np.asarray(layer(inputs))
    rng = np.random.default_rng(5)
    changed_text = np.where(text_mask[..., None], text, rng.normal(size=text.shape) * 10).astype("float32")
    changed_image = np.where(image_mask[..., None], image, rng.normal(size=image.shape) * 10).astype("float32")
    changed = np.asarray(layer({**inputs, "text": changed_text, "image": changed_image}))
    np.testing.assert_allclose(changed, reference, rtol=1e-5, atol=1e-5)
    # ...while changing a valid position does change it.
    valid_changed = text.copy()
    valid_changed[0, 0] += 1.0
    assert not np.allclose(np.asarray(layer({**inputs, "text": valid_changed})), reference, atol=1e-4)


def test_masks_as_keywords_equal_masks_in_dict():
    text, image, text_mask, image_mask = _tokens()
    layer = CrossAttentionFusion(num_heads=2, key_dim=4, bidirectional=True)
    from_dict = layer({"text": text, "image": image, "text_mask": text_mask, "image_mask": image_mask})
    from_kwargs = layer([text, image], text_mask=text_mask, image_mask=image_mask)
    np.testing.assert_allclose(np.asarray(from_dict), np.asarray(from_kwargs), rtol=1e-6)
    unmasked = layer([text, image])
    assert not np.allclose(np.asarray(unmasked), np.asarray(from_dict), atol=1e-4)


def test_integer_masks_and_fully_masked_rows_are_finite():
    text, image, text_mask, image_mask = _tokens()
    text_mask = text_mask.astype("int32")
    text_mask[0] = 0
    image_mask = image_mask.astype("int32")
    image_mask[1] = 0
    out = np.asarray(
        CrossAttentionFusion(num_heads=1, key_dim=2, bidirectional=True, pooling="max")(
            {"text": text, "image": image, "text_mask": text_mask, "image_mask": image_mask}
        )
    )
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out[0, :DT], 0.0)  # no text token to pool
    np.testing.assert_allclose(out[1, DT:], 0.0)  # no image token to pool


@pytest.mark.parametrize("bidirectional", [False, True])
def test_masked_call_equals_call_on_truncated_sequences(bidirectional):
    text, image, text_mask, image_mask = _tokens()
    layer = CrossAttentionFusion(num_heads=2, key_dim=4, bidirectional=bidirectional)
    masked = np.asarray(
        layer({"text": text, "image": image, "text_mask": text_mask, "image_mask": image_mask})
    )
    # Row 0 has 3 real text tokens and 4 real image tokens.
    truncated = np.asarray(layer({"text": text[:1, :3], "image": image[:1, :4]}))
    np.testing.assert_allclose(masked[:1], truncated, rtol=1e-4, atol=1e-5)


def test_implicit_keras_mask_is_respected():
    ids = np.array([[4, 5, 6, 0, 0], [1, 2, 3, 4, 5]], "int32")
    image = _tokens()[1]
    text_in = keras.Input((LT,), dtype="int32")
    image_in = keras.Input((LI, DI))
    embedding = keras.layers.Embedding(20, DT, mask_zero=True)
    layer = CrossAttentionFusion(num_heads=2, key_dim=4, bidirectional=True)
    model = keras.Model([text_in, image_in], layer([embedding(text_in), image_in]))
    explicit = layer({"text": embedding(ids), "image": image, "text_mask": ids != 0})
    np.testing.assert_allclose(np.asarray(model([ids, image])), np.asarray(explicit), rtol=1e-5, atol=1e-6)


def test_in_functional_model_with_tower_like_outputs(tmp_path):
    text_in = keras.Input((LT,), dtype="int32", name="token_ids")
    image_in = keras.Input((LI, DI), name="image_tokens")
    tokens = keras.layers.Embedding(20, DT)(text_in)
    mask = keras.ops.not_equal(text_in, 0)
    pooled = CrossAttentionFusion(num_heads=2, key_dim=4)({"text": tokens, "image": image_in, "text_mask": mask})
    model = keras.Model([text_in, image_in], keras.layers.Dense(3)(pooled))
    assert model.output_shape == (None, 3)
    ids = np.array([[4, 5, 6, 0, 0], [1, 2, 3, 4, 5]], "int32")
    image = _tokens()[1]
    path = str(tmp_path / "model.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(np.asarray(reloaded([ids, image])), np.asarray(model([ids, image])), atol=1e-6)


def test_mixed_precision():
    text, image, text_mask, image_mask = _tokens()
    out = CrossAttentionFusion(num_heads=2, key_dim=4, bidirectional=True, dtype="mixed_float16")(
        {"text": text, "image": image, "text_mask": text_mask, "image_mask": image_mask}
    )
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    assert np.all(np.isfinite(np.asarray(out, "float32")))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_heads": 0, "key_dim": 4}, "num_heads"),
        ({"num_heads": 2, "key_dim": -3}, "key_dim"),
        ({"num_heads": 2, "key_dim": 4, "pooling": "sum"}, "pooling"),
        ({"num_heads": 2, "key_dim": 4, "dropout": 1.0}, "dropout"),
        ({"num_heads": 2, "key_dim": 4, "bidirectional": "yes"}, "bidirectional"),
        ({"num_heads": 2, "key_dim": 4, "intermediate_dim": 0}, "intermediate_dim"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=f"{match}.*Received:"):
        CrossAttentionFusion(**kwargs)


def test_bad_inputs():
    text, image, _, _ = _tokens()
    layer = CrossAttentionFusion(num_heads=2, key_dim=4)
    with pytest.raises(ValueError, match="Received: keys"):
        layer({"txt": text, "image": image})
    with pytest.raises(ValueError, match="rank-3.*Received:"):
        layer([text[:, 0], image])
