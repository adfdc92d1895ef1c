"""`mmzoo demo` (mmzoo/demo.py): its plans and per-epoch lines, fast; the whole quick demo runs in the slow tier,
as README.md's slow block (tests/test_readme.py), and is checked by ``assert_quick_demo_ran``."""

from pathlib import Path

from mmzoo.demo import BASELINES, CAPTIONER, CLASSIFIER, MATCHER, PLANS, _epoch_line, _headline_log_key


def test_headline_log_key_is_the_first_accuracy_like_training_metric():
    assert _headline_log_key({"loss": 1.0, "val_loss": 1.0, "val_accuracy": 0.4, "accuracy": 0.5}) == "accuracy"
    assert _headline_log_key({"loss": 1.0, "logit_scale": 14.2, "image_to_text_recall@1": 0.3}) == (
        "image_to_text_recall@1"
    )
    assert _headline_log_key({"loss": 1.0, "auc": 0.7, "accuracy": 0.5}) == "auc"
    assert _headline_log_key({"loss": 1.0, "logit_scale": 14.2}) is None
    assert _headline_log_key({"val_accuracy": 0.5}) is None


def test_epoch_line_prints_loss_and_headline_metric_train_and_val(capsys):
    callback = _epoch_line("cross_attention_classifier", epochs=12)
    callback.on_epoch_end(2, {"loss": 1.23456, "val_loss": 2.5, "accuracy": 0.5, "val_accuracy": 0.25, "lr": 0.1})
    line = capsys.readouterr().out
    assert line == "        epoch  3/12  loss 1.235  val_loss 2.500  accuracy 0.500  val_accuracy 0.250\n"
    callback.on_epoch_end(0, None)  # Keras may pass no logs
    assert capsys.readouterr().out == "        epoch  1/12\n"


def test_plans_cover_every_trained_model_and_quick_is_smaller():
    jobs = {"classifier", "baseline", "dual_encoder", "captioner"}
    assert set(PLANS) == {"quick", "full"}
    for plan in PLANS.values():
        assert set(plan["epochs"]) == jobs and all(e >= 1 for e in plan["epochs"].values())
        assert len(plan["splits"]) == 3 and min(plan["splits"]) >= 1
    assert sum(PLANS["quick"]["splits"]) < sum(PLANS["full"]["splits"])
    assert len({CLASSIFIER, MATCHER, CAPTIONER, *BASELINES}) == 5


# `mmzoo demo --quick --out demo` is a slow block of README.md: the slow tier runs it there, in order with the
# other blocks (tests/test_readme.py::test_readme_runs_as_pasted_with_slow_blocks), and checks that run's output
# with this function instead of training the same quick demo a second time.
def assert_quick_demo_ran(out: str, demo_dir) -> None:
    """``out``: what ``mmzoo demo --quick --out DEMO_DIR`` printed; ``demo_dir``: its DEMO_DIR."""
    assert "[4/4]" in out and "greedy" in out and "best match" in out
    assert "epoch  1/" in out and "chance" in out and "run in" in out
    assert out.count("✓") + out.count("✗") >= 12, "a mark on each printed prediction"
    assert (Path(demo_dir) / "saved_models" / "models.config").is_file()
