"""Classifier evaluation (mmzoo/evaluation/classification.py) on a tiny classifier over the shapes records."""

import numpy as np
import pytest

import mmzoo
from mmzoo.data import label_names_from_records
from mmzoo.datasets.shapes import shapes_records
from mmzoo.evaluation.classification import evaluate_classifier, predict_records
from mmzoo.evaluation.forward import EAGER_BATCHES


@pytest.fixture(scope="module")
def classifier_and_records():
    records = shapes_records(8, image_size=32)
    labels = label_names_from_records(records)
    model = mmzoo.build("concat_classifier", preset="tiny", label_names=labels, image_size=(32, 32))
    return model, records


def _own_scores(model, records):
    """The model called directly on its own preprocessing of the records (no tf.data pipeline)."""
    x = model.preprocess(np.array([r.image for r in records], dtype=object), [r.text for r in records])
    return np.asarray(model(x, training=False)["scores"])


def test_predict_records_gives_labels_and_the_models_scores(classifier_and_records):
    model, records = classifier_and_records
    y_true, scores = predict_records(model, records, batch_size=3)  # batches of 3, 3 and 2: concatenated
    assert y_true.shape == (8,) and scores.shape == (8, len(model.label_names))
    assert y_true.tolist() == [model.label_names.index(r.label) for r in records]
    np.testing.assert_allclose(scores, _own_scores(model, records), atol=1e-5)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)


def test_predict_records_is_eager_for_a_few_batches_and_traces_once_for_more(classifier_and_records):
    model, records = classifier_and_records

    class Counting:
        """The classifier, counting its calls: an eager evaluation calls it per batch, a traced one once."""

        def __init__(self):
            self.calls = 0

        def __getattr__(self, name):
            return getattr(model, name)

        def __call__(self, x, training=False):
            self.calls += 1
            return model(x, training=training)

    few = Counting()
    _, scores = predict_records(few, records, batch_size=3)  # batches of 3, 3 and 2: eager, a call each
    np.testing.assert_allclose(scores, _own_scores(model, records), atol=1e-5)
    assert few.calls == 3

    many, more = Counting(), records + records[:3]
    assert len(more) > EAGER_BATCHES
    _, scores = predict_records(many, more, batch_size=1)  # 11 batches of 1: traced once
    np.testing.assert_allclose(scores, _own_scores(model, more), atol=1e-5)
    assert many.calls == 1


def test_accuracy_is_the_argmax_accuracy_of_the_models_scores(classifier_and_records):
    model, records = classifier_and_records
    metrics = evaluate_classifier(model, records, batch_size=4)
    truth = np.array([model.label_names.index(r.label) for r in records])
    predicted = _own_scores(model, records).argmax(axis=1)
    assert metrics["num_examples"] == 8
    assert metrics["accuracy"] == pytest.approx(float(np.mean(predicted == truth)))
    # Macro F1 by hand, over the classes present in the truth or the predictions.
    f1s = []
    for c in sorted(set(truth) | set(predicted)):
        tp = np.sum((predicted == c) & (truth == c))
        precision = tp / max(np.sum(predicted == c), 1)
        recall = tp / max(np.sum(truth == c), 1)
        f1s.append(0.0 if tp == 0 else 2 * precision * recall / (precision + recall))
    assert 0.0 <= metrics["macro_f1"] <= 1.0
    assert metrics["macro_f1"] == pytest.approx(float(np.mean(f1s)))
    # Relabel every record with the model's own prediction: then it is right on all of them.
    agreeing = [type(r)(r.image, r.text, model.label_names[p], r.captions) for r, p in zip(records, predicted)]
    assert evaluate_classifier(model, agreeing)["accuracy"] == 1.0


def test_no_records_is_a_clear_error(classifier_and_records):
    model, _ = classifier_and_records
    with pytest.raises(ValueError, match="Received: 0 records"):
        predict_records(model, [])
