"""The shapes grammar's truth check: which captions describe which scene."""

import pytest

from mmzoo.datasets.shapes import (
    SHAPES_WORD_GROUPS,
    shapes_caption_checker,
    shapes_caption_distribution,
    shapes_possible_captions,
    shapes_records,
)
from mmzoo.matching.negatives import word_swap_negative

TWO = [
    {"shape": "circle", "color": "red", "size": "small", "x": 8.0, "y": 16.0},
    {"shape": "square", "color": "blue", "size": "large", "x": 24.0, "y": 16.0},
]


def test_possible_captions_of_a_hand_built_scene():
    captions = shapes_possible_captions(TWO, 32)
    assert "a red circle left of a blue square" in captions
    assert "a large blue square right of a small red circle" in captions
    assert "two shapes a blue square and a red circle" in captions
    for false in ("a red circle right of a blue square", "a large red circle and a blue square",
                  "a blue circle left of a red square", "a red circle"):
        assert false not in captions
    with pytest.raises(ValueError, match="1 to 3 objects"):
        shapes_possible_captions([], 32)


def test_caption_distribution_is_the_generators_frequencies():
    import collections

    import numpy as np

    from mmzoo.datasets.shapes import _caption

    dist = shapes_caption_distribution(TWO, 32)
    assert set(dist) == shapes_possible_captions(TWO, 32)
    assert abs(sum(dist.values()) - 1.0) < 1e-9
    rng = np.random.default_rng(0)
    n = 20000
    drawn = collections.Counter(_caption(rng, TWO, 32) for _ in range(n))
    assert set(drawn) == set(dist)
    for caption, p in dist.items():  # 5 binomial standard deviations
        assert abs(drawn[caption] / n - p) < 5 * (p * (1 - p) / n) ** 0.5, caption
    # "{A} and {B}" without sizes, circle first: one pick of 5 templates x 2 orders x 2.
    assert dist["a red circle and a blue square"] == 1 / 20


def test_every_generated_caption_is_true_of_its_own_image():
    records = shapes_records(40, image_size=32, seed=5)
    is_match = shapes_caption_checker(32)
    assert all(is_match(r, c) for r in records for c in r.captions)
    # ... and mostly false of the other images.
    false = sum(not is_match(records[0], c) for r in records[1:] for c in r.captions)
    assert false >= 0.9 * sum(len(r.captions) for r in records[1:])


def test_word_swap_edits_of_shapes_captions_are_mostly_false():
    import numpy as np

    rng = np.random.default_rng(0)
    records = shapes_records(30, image_size=32, seed=6)
    is_match = shapes_caption_checker(32)
    edits = [(r, word_swap_negative(c, SHAPES_WORD_GROUPS, rng)) for r in records for c in r.captions]
    edits = [(r, e) for r, e in edits if e is not None]
    assert len(edits) == sum(len(r.captions) for r in records)  # every caption has a colour or shape
    assert sum(not is_match(r, e) for r, e in edits) >= 0.9 * len(edits)


def test_checker_refuses_records_without_a_scene():
    from mmzoo.data import Record

    with pytest.raises(ValueError, match="meta with 'objects'"):
        shapes_caption_checker(32)(Record("x.png", "t", None, ["a"]), "a")


def test_relation_edits_of_shapes_captions_are_false_and_swaps_are_the_converse():
    import numpy as np

    from mmzoo.datasets.shapes import SHAPES_RELATION_GRAMMAR
    from mmzoo.matching.negatives import RelationGrammar

    grammar = RelationGrammar.coerce(SHAPES_RELATION_GRAMMAR)
    rng = np.random.default_rng(0)
    records = shapes_records(60, image_size=32, seed=7)
    is_match = shapes_caption_checker(32)
    relation_captions = [(r, c) for r in records for c in r.captions if grammar.pattern.search(c)]
    assert len(relation_captions) >= 30  # the grammar's "A rel B" templates are found
    swaps = [(r, grammar.negative(c, rng, swap_probability=1.0)) for r, c in relation_captions]
    others = [(r, grammar.negative(c, rng, swap_probability=0.0)) for r, c in relation_captions]
    # A swap of a true asymmetric relation is false; "next to" is never swapped.
    assert all(not is_match(r, e) for (r, e), (_, c) in zip(swaps, relation_captions) if " next to " not in c)
    # Another relation word is false too, but for the rare pair near both thresholds.
    assert sum(not is_match(r, e) for r, e in others) >= 0.95 * len(others)
