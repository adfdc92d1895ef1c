"""benchmarks/retrieval.py end to end at --quick size or smaller: the saved models, and --dual-encoder reusing one."""

import os

import pytest

from benchmarks import retrieval

# Fewer held-out, validation and querybank images than --quick's 200 / 100 / 200: most of a quick run is
# evaluation (a QB-Norm temperature and a re-rank weight chosen on validation, two more held-out pools),
# which scales with these. Recall@10 still ranks among ~300 distinct captions (296 held-out ones).
SMALL_EVALUATION = ["--test-images", "100", "--val-images", "50", "--querybank-images", "100"]
# Fewer training images than --quick's 600 (4 steps of 64 an epoch), for the tests that count no steps.
SMALL_TRAINING = ["--train-images", "300", "--itm-train-images", "300", "--itm-rerank-images", "150"]


@pytest.mark.slow
def test_quick_run_saves_models_and_a_second_run_reuses_the_dual_encoder(tmp_path):
    data, models = str(tmp_path / "data"), str(tmp_path / "models")
    small = ["--quick", "--data-dir", data, "--skip-throughput", "--epochs", "2", "--itm-epochs", "1",
             *SMALL_EVALUATION, *SMALL_TRAINING]
    first = retrieval.main(small + ["--save-dir", models])
    assert sorted(os.listdir(models)) == ["dual_encoder.keras", "itm_matcher.keras"]
    for key in ("image_to_text_recall@1", "image_to_text_recall@10"):
        assert 0.0 <= first["dual"][key] <= first["dual"]["image_to_text_recall@10"] <= 1.0
    rerank = first["rerank"]
    assert (rerank["fusion"], rerank["weight"]) == ("log_odds", 0.0) or rerank["weight"] > 0
    assert rerank["fusion"] in ("log_odds", "log_prob", "gate")
    # --quick's 2 extra held-out pools, written beside the others, each with its QB-Norm and re-ranked R@1.
    assert len(rerank["pools"]) == 2 and all(0.0 <= r <= 1.0 for pool in rerank["pools"] for r in pool)
    assert os.path.exists(os.path.join(data, "test_extra_1", "manifest.jsonl"))
    assert os.path.exists(os.path.join(data, "rerank", "manifest.jsonl"))  # the truth stage's images
    if rerank["weight"] == 0.0:  # no ITM: nothing changes on any pool
        assert all(q == r for q, r in rerank["pools"])

    # The saved dual encoder, loaded instead of trained: the same first-stage figures, no training.
    second = retrieval.main(small + ["--dual-encoder", os.path.join(models, "dual_encoder.keras"), "--skip-itm"])
    assert second["rerank"] is None
    for key, value in first["dual"].items():
        assert second["dual"][key] == pytest.approx(value, abs=1e-6), key
    assert second["qb"]["image_to_text_recall@1"] == pytest.approx(first["qb"]["image_to_text_recall@1"])


@pytest.mark.slow
def test_backup_dir_resumes_an_interrupted_dual_encoder_run(tmp_path, monkeypatch, capsys):
    data, backup = str(tmp_path / "data"), str(tmp_path / "backup")
    # 600 training images x 1 caption in batches of 64: 9 steps per epoch.
    args = ["--quick", "--data-dir", data, "--skip-throughput", "--skip-itm", "--epochs", "3",
            "--eval-every", "0", "--backup-dir", backup, *SMALL_EVALUATION]
    original = retrieval.HeldOutCurve.on_epoch_end

    def interrupt_in_epoch_2(self, epoch, logs=None):
        # Runs before BackupAndRestore's epoch end: epoch 1 is backed up, epoch 2 is lost.
        if epoch == 1:
            raise KeyboardInterrupt("killed during epoch 2")
        return original(self, epoch, logs)

    monkeypatch.setattr(retrieval.HeldOutCurve, "on_epoch_end", interrupt_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        retrieval.main(args)
    assert os.listdir(backup), "no backup written after epoch 1"
    monkeypatch.setattr(retrieval.HeldOutCurve, "on_epoch_end", original)
    capsys.readouterr()

    result = retrieval.main(args)
    out = capsys.readouterr().out
    # Epochs 2 and 3 ran; the optimizer (and with it the learning-rate schedule) went on from
    # step 9, not from 0.
    assert f"3 epochs (resumed from {backup}: the last 2)" in out
    assert "(27 optimizer steps)" in out
    assert not os.path.exists(backup) or not os.listdir(backup)  # deleted once training completed
    assert 0.0 <= result["dual"]["image_to_text_recall@1"] <= 1.0


@pytest.mark.slow
def test_checkpoint_best_keeps_the_epoch_with_the_best_validation_recall(tmp_path):
    from mmzoo.data import read_manifest
    from mmzoo.evaluation.retrieval import evaluate_matcher

    data, models = str(tmp_path / "data"), str(tmp_path / "models")
    result = retrieval.main(["--quick", "--data-dir", data, "--skip-throughput", "--skip-itm", "--epochs", "4",
                             "--eval-every", "1", "--checkpoint", "best", "--save-dir", models,
                             *SMALL_EVALUATION, *SMALL_TRAINING])
    curve = result["curve"]
    assert [point[0] for point in curve] == [1, 2, 3, 4]
    best = max(point[3] for point in curve)
    # The saved model (BN statistics recomputed, as at every evaluation) is the best validation epoch's.
    clip = retrieval.mmzoo.load_model(os.path.join(models, "dual_encoder.keras"))
    val = read_manifest(os.path.join(data, "val", "manifest.jsonl"))
    assert evaluate_matcher(clip, val, batch_size=256)["image_to_text_recall@1"] == pytest.approx(best)
    chosen = max((point for point in curve if point[3] == best), key=lambda point: point[0])
    assert result["dual"]["image_to_text_recall@1"] == pytest.approx(chosen[1])


def test_pool_gain_summary_and_rerank_options():
    gain, standard_error, up, down = retrieval.pool_gain_summary([(0.80, 0.81), (0.70, 0.70), (0.75, 0.77)])
    assert gain == pytest.approx(0.01) and (up, down) == (2, 0)
    assert standard_error == pytest.approx(0.01 / 3 ** 0.5)  # gains 0.01, 0, 0.02: sd 0.01
    assert retrieval.rerank_options("gate", 0.3) == {"rerank_threshold": 0.3}
    assert retrieval.rerank_options("log_prob", 0.25) == {"rerank_fusion": "log_prob", "rerank_weight": 0.25}
    args = retrieval.parse_args(["--extra-test-pools", "3"])
    rows = retrieval.pool_rows(args, {"pools": [(0.80, 0.81), (0.70, 0.70), (0.75, 0.77)]})
    assert rows[0]["value"] == "+0.0100 (0.0058; 2 / 0)" and rows[0]["met"] is False  # 0.01 < 2 SE
    assert retrieval.pool_rows(args, {"pools": [(0.8, 0.81)]}) == []  # no standard error from one pool
