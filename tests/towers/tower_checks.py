"""Standard checks every tower goes through (used by the tests in this folder)."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

from tests.harness import assert_model_roundtrip


def check_output_contract(tower, inputs, pooled_dim, num_tokens, token_dim):
    """The output is {"pooled", "tokens", "mask"} with the contract's shapes and dtypes."""
    out = tower(inputs)
    assert sorted(out) == ["mask", "pooled", "tokens"]
    batch = len(inputs)
    assert tuple(out["pooled"].shape) == (batch, pooled_dim)
    assert tuple(out["tokens"].shape) == (batch, num_tokens, token_dim)
    assert tuple(out["mask"].shape) == (batch, num_tokens)
    dtypes = {k: keras.backend.standardize_dtype(v.dtype) for k, v in out.items()}
    assert dtypes == {"pooled": "float32", "tokens": "float32", "mask": "bool"}
    # Symbolic shapes agree with the eager ones.
    assert tuple(tower.output["pooled"].shape) == (None, pooled_dim)
    assert tuple(tower.output["tokens"].shape) == (None, num_tokens, token_dim)
    return {k: np.asarray(v) for k, v in out.items()}


# What every tower built on the Transformer encoder stack (the text
# Transformer, the ViT) refuses, as ``(kwargs, match)`` for ``check_bad_arguments``.
ENCODER_STACK_BAD_ARGUMENTS = [
    ({"dim": 9}, "divisible by num_heads"),
    ({"num_layers": 0}, "Received: num_layers=0"),
]


def check_bad_arguments(build, kwargs, match):
    """``build(**kwargs)`` raises a ValueError matching ``match``."""
    with pytest.raises(ValueError, match=match):
        build(**kwargs)


def wrap(tower, num_classes=3):
    """A model with ``tower`` inside: a Dense head on pooled, plus the tower's pooled/tokens."""
    spec = tower.inputs[0]
    inp = keras.Input(spec.shape[1:], dtype=spec.dtype, name="inputs")
    out = tower(inp)
    logits = keras.layers.Dense(num_classes, name="logits")(out["pooled"])
    return keras.Model(inp, {"logits": logits, "pooled": out["pooled"], "tokens": out["tokens"]})


def check_fit_step(tower, inputs, num_classes=3):
    """One SGD step on a loss that reads both outputs (``pooled`` and ``tokens``, as the zoo's fusions
    do) gives a finite loss, reaches every trainable weight of the tower (Keras warns "Gradients do not
    exist" for one that no output depends on) and changes its weights."""
    model = wrap(tower, num_classes)
    tokens = keras.layers.GlobalAveragePooling1D()(model.output["tokens"])
    logits = keras.layers.Add()([model.output["logits"], keras.layers.Dense(num_classes)(tokens)])
    head = keras.Model(model.input, logits)
    head.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    labels = np.arange(len(inputs)) % num_classes
    before = [np.array(w) for w in tower.trainable_weights]
    assert before, "the tower has no trainable weights"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = head.fit(inputs, labels, epochs=1, batch_size=len(inputs), verbose=0)
    unreached = [str(w.message) for w in caught if "Gradients do not exist" in str(w.message)]
    assert not unreached, unreached
    assert np.isfinite(history.history["loss"][0])
    after = [np.array(w) for w in tower.trainable_weights]
    assert any(not np.allclose(b, a) for b, a in zip(before, after)), "a fit step changed no weight"


def check_roundtrip(tower, inputs, tmp_path, atol=1e-5):
    """A model containing the tower reloads with safe_mode=True and identical outputs."""
    return assert_model_roundtrip(wrap(tower), inputs, tmp_path, atol=atol)


def check_two_towers_coexist(build, inputs, tmp_path):
    """Two towers from the same builder with different names live in one model."""
    a, b = build("tower_a"), build("tower_b")
    spec = a.inputs[0]
    inp = keras.Input(spec.shape[1:], dtype=spec.dtype)
    pooled = keras.layers.Concatenate()([a(inp)["pooled"], b(inp)["pooled"]])
    model = keras.Model(inp, pooled)
    assert {"tower_a", "tower_b"} <= {layer.name for layer in model.layers}
    assert_model_roundtrip(model, inputs, tmp_path)


def copy_weights_for_longer_sequence(src, dst):
    """Copy ``src``'s weights into ``dst`` (same tower, longer ``sequence_length``).

    Position tables are longer in ``dst``: their first rows get ``src``'s.
    """
    for ws, wd in zip(src.weights, dst.weights):
        value = np.array(ws)
        if value.shape != tuple(wd.shape):
            full = np.array(wd)
            full[: value.shape[0]] = value
            value = full
        wd.assign(value)


def check_padding_invariance(build, vocabulary_size=20, short=6, long=10):
    """Pooled/tokens of a text tower ignore how much padding follows the text,
    and what the padding id's embedding holds."""
    a = build(short)
    b = build(long)
    copy_weights_for_longer_sequence(a, b)
    texts = [[4, 5, 6], [7, 8, 9, 10, 11], [12]]
    ids_a = np.zeros((3, short), "int32")
    ids_b = np.zeros((3, long), "int32")
    for i, t in enumerate(texts):
        ids_a[i, : len(t)] = t
        ids_b[i, : len(t)] = t
    out_a = {k: np.asarray(v) for k, v in a(ids_a).items()}
    out_b = {k: np.asarray(v) for k, v in b(ids_b).items()}
    np.testing.assert_allclose(out_a["pooled"], out_b["pooled"], atol=1e-5)
    valid = out_a["mask"][..., None]
    np.testing.assert_allclose(out_a["tokens"] * valid, out_b["tokens"][:, :short] * valid, atol=1e-5)
    assert out_a["mask"].tolist() == [[j < len(t) for j in range(short)] for t in texts]

    # Changing the padding id's embedding row leaves every output unchanged.
    table = next(w for w in a.weights if tuple(w.shape)[0] == vocabulary_size)
    values = np.array(table)
    values[0] = 50.0
    table.assign(values)
    out_c = {k: np.asarray(v) for k, v in a(ids_a).items()}
    np.testing.assert_allclose(out_a["pooled"], out_c["pooled"], atol=1e-5)
    np.testing.assert_allclose(
        out_a["tokens"] * out_a["mask"][..., None], out_c["tokens"] * out_c["mask"][..., None], atol=1e-5
    )
    # ...while a real token does change the pooled output.
    ids_d = ids_a.copy()
    ids_d[0, 3] = 13
    assert not np.allclose(np.asarray(a(ids_d)["pooled"])[0], out_a["pooled"][0], atol=1e-6)
