"""benchmarks/retrieval.py end to end at --quick size: the saved models, and --dual-encoder reusing one."""

import importlib.util
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_spec = importlib.util.spec_from_file_location("benchmarks_retrieval_run", os.path.join(REPO, "benchmarks", "retrieval.py"))
retrieval = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(retrieval)


@pytest.mark.slow
def test_quick_run_saves_models_and_a_second_run_reuses_the_dual_encoder(tmp_path):
    data, models = str(tmp_path / "data"), str(tmp_path / "models")
    small = ["--quick", "--data-dir", data, "--skip-throughput", "--epochs", "2", "--itm-epochs", "1"]
    first = retrieval.main(small + ["--save-dir", models])
    assert sorted(os.listdir(models)) == ["dual_encoder.keras", "itm_matcher.keras"]
    for key in ("image_to_text_recall@1", "image_to_text_recall@10"):
        assert 0.0 <= first["dual"][key] <= first["dual"]["image_to_text_recall@10"] <= 1.0
    rerank = first["rerank"]
    assert (rerank["fusion"], rerank["weight"]) == ("log_odds", 0.0) or rerank["weight"] > 0
    assert rerank["fusion"] in ("log_odds", "log_prob")

    # The saved dual encoder, loaded instead of trained: the same first-stage figures, no training.
    second = retrieval.main(small + ["--dual-encoder", os.path.join(models, "dual_encoder.keras"), "--skip-itm"])
    assert second["rerank"] is None
    for key, value in first["dual"].items():
        assert second["dual"][key] == pytest.approx(value, abs=1e-6), key
    assert second["qb"]["image_to_text_recall@1"] == pytest.approx(first["qb"]["image_to_text_recall@1"])
