"""benchmarks/overhead.py: the plain Keras twin matches the zoo model; a tiny run follows the report contract."""

import math

import keras
import numpy as np
import pytest

from benchmarks import overhead, run


def _layer_counts(model):
    counts = {}
    for layer in model._flatten_layers(include_self=False):
        if layer.weights or isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.Dropout)):
            name = type(layer).__name__
            counts[name] = counts.get(name, 0) + 1
    return counts


def test_plain_model_is_the_zoo_network_written_by_hand():
    zoo = overhead.build_zoo_model()
    plain = overhead.plain_classic_model(zoo)
    assert plain.count_params() == zoo.count_params()
    assert sorted(tuple(w.shape) for w in plain.trainable_weights) == sorted(tuple(w.shape) for w in zoo.trainable_weights)
    counts = _layer_counts(plain)
    assert {k: counts.get(k) for k in ("Conv2D", "MaxPooling2D", "Embedding", "LSTM", "LayerNormalization", "Dense", "Dropout")} == {
        "Conv2D": 3, "MaxPooling2D": 3, "Embedding": 1, "LSTM": 1, "LayerNormalization": 2, "Dense": 2, "Dropout": 1,
    }
    x, _ = overhead.synthetic_arrays(3, zoo.image_size, zoo.sequence_length, zoo.tokenizer.vocabulary_size, zoo.num_classes)
    assert (x["token_ids"] == 0).any() and (x["token_ids"][:, 0] != 0).all()  # padded, never empty
    assert tuple(plain(x).shape) == tuple(zoo(x)["scores"].shape) == (3, zoo.num_classes)
    assert type(plain.optimizer) is type(zoo.optimizer) and type(plain.loss) is type(zoo.loss)
    assert float(plain.optimizer.learning_rate) == pytest.approx(float(zoo.optimizer.learning_rate))


def test_tiny_run_follows_the_contract(capsys):
    report, train, serve = overhead.main(
        ["--steps", "4", "--skip", "1", "--repeats", "2", "--batch-size", "8", "--num-examples", "32",
         "--serve-batch", "2", "--source-size", "40", "--rounds", "3"]
    )
    parsed = run.parse_report(capsys.readouterr().out, "overhead")
    assert parsed == report
    assert parsed["command"].startswith("python -m benchmarks.overhead ")
    assert train["params"]["zoo"] == train["params"]["plain"]
    ratios = [train["ratio"], train["cpu_ratio"], *train["pair_ratios"]]
    for r in serve.values():
        ratios += [r["ratio"], r["checked_ratio"]]
        assert r["same_outputs"]
    assert sorted(serve) == [1, 2]
    for value in ratios:
        assert isinstance(value, float) and math.isfinite(value) and value > 0, value
    goals = [row for row in parsed["rows"] if row["goal"] is not None]
    assert [row["goal"] for row in goals] == [">= 0.95x", "<= 1.10x"]
    assert all(isinstance(row["met"], bool) for row in goals)
    assert all(np.isfinite(float(row["value"].split("x")[0])) for row in parsed["rows"])
