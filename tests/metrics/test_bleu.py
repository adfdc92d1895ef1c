import math

import pytest
from pycocoevalcap.bleu.bleu import Bleu

from mmzoo.metrics.bleu import corpus_bleu, normalize_caption
from tests.metrics.corpora import random_corpus


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_pycocoevalcap(seed):
    refs, hyps = random_corpus(seed, num_images=30, words_per_sentence=(1, 9), references_per_image=(1, 4))
    expected, _ = Bleu(4).compute_score(
        {i: r for i, r in enumerate(refs)}, {i: [h] for i, h in enumerate(hyps)}, verbose=0
    )
    ours = corpus_bleu(refs, hyps)
    assert list(ours) == ["bleu_1", "bleu_2", "bleu_3", "bleu_4"]
    for k, value in enumerate(expected):
        assert ours[f"bleu_{k + 1}"] == pytest.approx(value, rel=1e-9, abs=1e-12)


def test_perfect_and_disjoint():
    refs = [["a red circle left of a blue square"], ["the big green triangle"]]
    assert corpus_bleu(refs, ["a red circle left of a blue square", "the big green triangle"])[
        "bleu_4"
    ] == pytest.approx(1.0)
    assert corpus_bleu(refs, ["x y z w", "q r s t"])["bleu_1"] < 1e-6


def test_brevity_penalty_lowers_short_hypotheses():
    refs = [["a red circle left of a blue square"]]
    short = corpus_bleu(refs, ["a red circle"])
    assert short["bleu_1"] == pytest.approx(math.exp(1 - 8 / 3), rel=1e-6)  # precision 1, brevity penalty


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="len\\(references\\)=1, len\\(hypotheses\\)=2"):
        corpus_bleu([["a"]], ["a", "b"])
    with pytest.raises(ValueError, match="at least one reference"):
        corpus_bleu([[]], ["a"])
    with pytest.raises(TypeError, match="list of strings"):
        corpus_bleu([["a"]], "a")


def test_normalize_caption():
    assert normalize_caption("A red  Circle.") == "a red circle"
    assert normalize_caption(b"Two, blue squares!") == "two blue squares"
