"""The digit-scan question task needs both modalities: each alone is at chance."""

import collections
import json
import os

import numpy as np
import pytest

from benchmarks import _digits_questions


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    module = _digits_questions
    out = tmp_path_factory.mktemp("digits")
    manifests = module.write_digits_questions(out, questions_per_image=4, seed=0)
    rows = {split: [json.loads(line) for line in open(path)] for split, path in manifests.items()}
    return module, manifests, rows


def _truth(module, text, digit):
    words = text.split()
    if words[-1] in module.WORDS:                      # "is this digit a seven"
        return module.WORDS.index(words[-1]) == digit
    parity = "even" if "even" in words else "odd"      # "is the number even", "is it an odd number"
    return (digit % 2 == 0) == (parity == "even")


def test_every_answer_is_true_of_its_scan(task):
    from sklearn.datasets import load_digits

    module, manifests, rows = task
    targets = load_digits().target
    for split in ("train", "test"):
        for row in rows[split]:
            digit = int(targets[int(os.path.basename(row["image"]).split(".")[0])])
            assert (row["label"] == "yes") == _truth(module, row["text"], digit), row
    assert len(rows["test"]) == 599 and len(rows["train"]) == 4 * (1797 - 599)
    assert os.path.isfile(os.path.join(os.path.dirname(manifests["test"]), rows["test"][0]["image"]))


def test_neither_modality_alone_beats_chance(task):
    _, _, rows = task
    train = rows["train"]
    # Text alone: every frequent question is answered yes about half the time.
    by_text = collections.defaultdict(list)
    for row in train:
        by_text[row["text"]].append(row["label"] == "yes")
    frequent = {t: np.mean(v) for t, v in by_text.items() if len(v) >= 40}
    assert len(frequent) >= 20
    assert all(0.3 <= rate <= 0.7 for rate in frequent.values()), frequent
    best_text_guess = sum(max(sum(v), len(v) - sum(v)) for v in by_text.values()) / len(train)
    assert best_text_guess < 0.58
    # Image alone: each scan's answers are yes about as often as no overall.
    yes = np.mean([row["label"] == "yes" for row in train])
    assert 0.45 <= yes <= 0.55
