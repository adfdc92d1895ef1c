"""benchmarks/pretrained.py: the rewording really changes the words; a quick run prints sane rows."""

import json
import re

import pytest

from benchmarks import pretrained
from mmzoo.datasets.shapes import COLORS, SHAPES, VOCABULARY, shapes_records

# Function words a reworded frame may share with the generator's grammar.
SHARED = {"the", "of"}


@pytest.fixture(scope="module")
def questions():
    return [r.text for r in shapes_records(60, image_size=16, seed=3)]


def test_reword_changes_every_word_but_the_asked_about_one(questions):
    for i, text in enumerate(questions):
        slot = next(w for w in text.split() if w in COLORS or w in SHAPES)
        new = pretrained.reword(text, i)
        assert new != text
        assert slot in new.split()
        assert set(new.split()) - {slot} - SHARED <= set(new.split()) - set(VOCABULARY), (text, new)


def test_reword_with_synonyms_leaves_no_word_of_the_grammar_but_function_words(questions):
    for i, text in enumerate(questions):
        new = pretrained.reword(text, i, synonyms=True)
        assert not set(new.split()) & (set(VOCABULARY) - SHARED), (text, new)


def test_reword_is_deterministic_keeps_the_kind_and_uses_every_variant(questions):
    assert [pretrained.reword(t, i, True) for i, t in enumerate(questions)] == \
        [pretrained.reword(t, i, True) for i, t in enumerate(questions)]
    assert pretrained.reword("what color is the circle", 0) == "tell me the hue of the circle"
    assert pretrained.reword("what shape is the red one", 0) == "describe the outline of the red item"
    frames = {pretrained.reword("what color is the circle", i) for i in range(3)}
    assert frames == {f.format(x="circle") for f in pretrained.COLOR_FRAMES}
    used = {w for i in range(6) for w in pretrained.reword("which shape is blue", i, True).split()}
    assert used & {"blue", *pretrained.SYNONYMS} == set() and set(pretrained.SYNONYMS["blue"]) <= used
    with pytest.raises(ValueError, match="Not a shapes question"):
        pretrained.reword("what is this")


def test_reworded_records_keep_images_and_labels():
    records = shapes_records(12, image_size=16, seed=1)
    for wording in pretrained.WORDINGS:
        new = pretrained.reworded_records(records, wording)
        assert [(r.image, r.label) for r in new] == [(r.image, r.label) for r in records]
        changed = [a.text != b.text for a, b in zip(new, records)]
        assert all(changed) if wording != "original" else not any(changed)


# Smaller than --quick (300 / 100 images, 64 timed, batch 32, 4 steps per timed fit): most of a quick run is
# fit steps of the MiniLM tower (five variants, two of them training all or the top of its 22.6M parameters).
SMALLER_THAN_QUICK = ["--quick", "--num-train", "96", "--num-test", "48", "--num-images", "32", "--batch-size", "16",
                      "--steps", "3", "--skip", "1"]


@pytest.mark.slow
def test_quick_run_prints_every_row(capsys):
    rows = pretrained.main(SMALLER_THAN_QUICK)
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["benchmark"] == "pretrained" and report["rows"] == rows
    assert report["command"] == "python -m benchmarks.pretrained " + " ".join(SMALLER_THAN_QUICK)
    figures = [r["figure"] for r in rows]
    for wording in pretrained.WORDINGS:
        row = next(r for r in rows if f", {pretrained.WORDING_LABELS[wording]}:" in r["figure"])
        a, b = map(float, re.match(r"([\d.]+) / ([\d.]+) ", row["value"]).groups())
        assert 0.0 <= a <= 1.0 and 0.0 <= b <= 1.0
        assert row["met"] is (None if wording == "original" else a > b)
    for variant in pretrained.VARIANTS[1:]:
        label = pretrained.variant_label(variant, pretrained.parse_args(SMALLER_THAN_QUICK))
        row = next(r for r in rows if r["figure"].startswith(f"training examples/s, {label} / "))
        ratio, rate, frozen = map(float, re.match(r"([\d.]+)x \(([\d.]+) vs ([\d.]+);", row["value"]).groups())
        assert ratio > 0 and rate > 0 and frozen > 0
    assert any(f.startswith("machine load") for f in figures)
