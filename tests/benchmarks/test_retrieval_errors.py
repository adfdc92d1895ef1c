"""benchmarks/experiments/retrieval_errors.py: which word groups a false caption gets wrong."""

import pytest

from benchmarks.experiments import retrieval_errors as errors

# A research script (benchmarks/experiments): out of the default tier.
pytestmark = pytest.mark.slow

TRUE = ["a red circle left of a blue square", "a blue square right of a red circle", "a red circle and a blue square"]


def test_a_swapped_relation_is_a_relation_error():
    assert errors.error_groups("a red circle right of a blue square", TRUE) == "relation"


def test_the_closest_true_caption_decides():
    # One word from "a red circle left of a blue square" (colour), more from the others.
    assert errors.error_groups("a green circle left of a blue square", TRUE) == "colour"
    assert errors.error_groups("a red triangle and a green square", TRUE) == "colour+shape"


def test_no_true_caption_of_that_length():
    assert errors.error_groups("a small red circle", TRUE) == "no true caption of the same length"
