import pytest
from pycocoevalcap.cider.cider import Cider

from mmzoo.metrics.cider import cider_d, cider_d_scores
from tests.metrics.corpora import random_corpus


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_pycocoevalcap(seed):
    refs, hyps = random_corpus(seed, num_images=25, words_per_sentence=(2, 10), references_per_image=(1, 5))
    expected, expected_per_image = Cider().compute_score(
        {i: r for i, r in enumerate(refs)}, {i: [h] for i, h in enumerate(hyps)}
    )
    assert cider_d(refs, hyps) == pytest.approx(float(expected), rel=1e-9)
    assert cider_d_scores(refs, hyps) == pytest.approx(list(expected_per_image), rel=1e-9, abs=1e-12)


def test_copying_a_reference_scores_higher():
    refs = [["a red circle"], ["a blue square"], ["a green triangle above a red circle"]]
    good = cider_d(refs, ["a red circle", "a blue square", "a green triangle above a red circle"])
    bad = cider_d(refs, ["a blue square", "a red circle", "a red circle"])
    assert good > 5.0 > bad


def test_sigma_must_be_positive():
    with pytest.raises(ValueError, match="sigma=0"):
        cider_d([["a"]], ["a"], sigma=0)
