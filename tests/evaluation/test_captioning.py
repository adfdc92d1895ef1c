import json

import pytest

import mmzoo
from mmzoo.datasets.shapes import shapes_records
from mmzoo.evaluation.captioning import evaluate_captioner


def test_evaluate_captioner_on_records(tmp_path):
    model = mmzoo.build("lstm_captioner", preset="tiny")
    records = shapes_records(5, image_size=32, seed=1)
    records[0].captions = []  # left out
    scores = evaluate_captioner(model, records, batch_size=3, method="beam", beam_width=2)
    assert set(scores) == {"bleu_1", "bleu_2", "bleu_3", "bleu_4", "cider_d", "exact_match", "num_images"}
    assert scores["num_images"] == 4.0
    assert all(isinstance(v, float) and v >= 0.0 for v in scores.values())
    json.dumps(scores)


def test_evaluate_captioner_needs_a_captioner_and_captions():
    model = mmzoo.build("lstm_captioner", preset="tiny")
    records = shapes_records(2, image_size=32, seed=1)
    for r in records:
        r.captions = []
    with pytest.raises(ValueError, match="with captions"):
        evaluate_captioner(model, records)
    with pytest.raises(ValueError, match="task=None"):
        evaluate_captioner(object(), records)
