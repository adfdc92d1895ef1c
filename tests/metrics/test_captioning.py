import pytest

from mmzoo.metrics.captioning import caption_scores


def test_caption_scores_normalise_and_match_any_reference():
    refs = [["A red circle.", "a circle"], ["a blue square"]]
    scores = caption_scores(refs, ["a red  circle", "a green square"])
    assert scores["exact_match"] == pytest.approx(0.5)
    assert 0.0 < scores["bleu_1"] < 1.0
    perfect = caption_scores(refs, ["a circle", "a blue square"])
    assert perfect["exact_match"] == 1.0 and perfect["bleu_1"] == pytest.approx(1.0)
