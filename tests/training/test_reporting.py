"""Tests for mmzoo/training/reporting.py: metric lines beside chance, and the printed summary.

(Each task's chance levels are tested in tests/tasks.)
"""

import os
import types

import pytest

from mmzoo.data.records import Record
from mmzoo.training import chance_levels, format_result, metric_lines
from mmzoo.training.reporting import _held_out, format_evaluation

RESULT = {
    "model": "gated_classifier", "preset": "tiny", "epochs_run": 2, "initial_epoch": 0, "train_seconds": 3.25,
    "final_loss": 0.51234, "num_params": 12345, "evaluated_on": "val",
    "metrics": {"accuracy": 0.75, "macro_f1": 0.5, "num_examples": 8.0},
    "chance": {"rule": "always the most common answer, 'red'", "metrics": {"accuracy": 0.25}},
}


def test_metric_lines_puts_chance_beside_the_headline_metrics():
    lines = metric_lines(RESULT["metrics"], RESULT["chance"], indent="> ")
    assert lines == ["> accuracy  0.750   chance 0.250 (always the most common answer, 'red')", "> macro_f1  0.500"]
    # Without headline metrics: every float that is not a count.
    assert metric_lines({"loss_x": 0.5, "num_images": 3.0}) == ["  loss_x  0.500"]
    # The rule goes on the first line that has a chance level.
    assert metric_lines({"macro_f1": 0.5, "exact_match": 0.25}, {"rule": "r", "metrics": {"exact_match": 0.1}}) == [
        "  macro_f1     0.500", "  exact_match  0.250   chance 0.100 (r)"]
    # Values stay in one column when one has more digits (CIDEr-D goes up to 10).
    assert metric_lines({"bleu_4": 0.5, "cider_d": 10.0}, {"metrics": {"bleu_4": 0.25}}) == [
        "  bleu_4    0.500   chance 0.250", "  cider_d  10.000"]


def test_chance_levels_of_an_unknown_task_is_empty():
    assert chance_levels(types.SimpleNamespace(task="segmentation"), []) == {"rule": "", "metrics": {}}
    assert chance_levels(types.SimpleNamespace(task="classification"), []) == {"rule": "no labels", "metrics": {}}


def test_format_result_without_a_model_path():
    text = format_result(RESULT)
    assert text.splitlines() == [
        "mmzoo train: gated_classifier (preset tiny) trained 2 epoch(s) in 3.2 s; final loss 0.5123; "
        "12,345 parameters",
        "evaluated on the validation data, 8 examples:",
        "  accuracy  0.750   chance 0.250 (always the most common answer, 'red')",
        "  macro_f1  0.500",
    ]


@pytest.mark.parametrize("with_logs", [True, False])
def test_format_result_lists_what_the_run_wrote(tmp_path, with_logs):
    out = tmp_path / "gated"
    out.mkdir()
    for name in ("model.keras", "metrics.json", "run_config.json"):
        (out / name).write_text("{}")
    if with_logs:
        (out / "logs").mkdir()
    result = {**RESULT, "initial_epoch": 1, "evaluated_on": "train", "model_path": str(out / "model.keras")}
    lines = format_result(result, data="d.jsonl").splitlines()
    assert "after resuming at epoch 2 in" in lines[0]
    assert lines[1].startswith("evaluated on the training data (no --val-data")
    logs = ", logs/ (TensorBoard)" if with_logs else ""
    assert f"wrote {out}{os.sep}: model.keras, metrics.json, run_config.json{logs}" in lines
    assert ("no TensorBoard logs: pip install tensorboard to write OUT/logs" in lines) is not with_logs
    # d.jsonl has no test or validation sibling: evaluating on it again would say nothing new.
    assert lines[-1] == (f"next: mmzoo evaluate {out / 'model.keras'} --data HELD_OUT_MANIFEST  |  "
                         f"mmzoo export {out / 'model.keras'}  (as gated)")


@pytest.mark.parametrize("train, siblings, expected", [
    ("data/train/manifest.jsonl", ["data/val/manifest.jsonl", "data/test/manifest.jsonl"], "data/test/manifest.jsonl"),
    ("train.csv", ["val.csv"], "val.csv"),
    ("my_train_rows.jsonl", ["my_validation_rows.jsonl"], "my_validation_rows.jsonl"),
    ("data/train/manifest.jsonl", ["data/train/test.jsonl"], "HELD_OUT_MANIFEST"),
    ("rows.jsonl", ["test.jsonl"], "HELD_OUT_MANIFEST"),
])
def test_the_suggested_evaluation_is_a_held_out_sibling(tmp_path, monkeypatch, train, siblings, expected):
    monkeypatch.chdir(tmp_path)
    for path in [train, *siblings]:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        open(path, "w").close()
    assert _held_out(train) == expected
    assert _held_out(None) == "HELD_OUT_MANIFEST"


def test_format_evaluation_puts_the_evaluated_records_chance_beside_each_metric():
    records = [Record(image=f"{i}.png", text="q", label=label) for i, label in enumerate(["yes", "yes", "no", "yes"])]
    metrics = {"accuracy": 0.5, "macro_f1": 0.4, "num_examples": 4.0}
    model = types.SimpleNamespace(task="classification")
    assert format_evaluation(metrics, model, records, model_path="runs/a/model.keras", data="test.csv").splitlines() == [
        "mmzoo evaluate: runs/a/model.keras on test.csv, 4 examples:",
        "  accuracy  0.500   chance 0.750 (always the most common answer, 'yes')",
        f"  macro_f1  0.400   chance {2 * 0.75 / 1.75 / 2:.3f}",
    ]


def test_format_evaluation_of_a_matcher_counts_images_and_distinct_captions():
    records = [Record(image=f"{i}.png", captions=["a dog" if i < 3 else "a cat"]) for i in range(4)]
    metrics = {"image_to_text_recall@1": 0.75, "text_to_image_recall@1": 1.0, "num_images": 4.0, "num_texts": 2.0}
    lines = format_evaluation(metrics, types.SimpleNamespace(task="matching"), records).splitlines()
    assert lines == [
        "mmzoo evaluate: the model, 4 images and 2 distinct captions:",
        "  image_to_text_recall@1  0.750   chance 0.500 (a random ranking of 4 images and 2 distinct captions)",
        f"  text_to_image_recall@1  1.000   chance {(3 / 4 + 1 / 4) / 2:.3f}",
    ]


def test_the_suggested_evaluation_repeats_the_column_names(tmp_path):
    (tmp_path / "model.keras").write_bytes(b"")
    result = {**RESULT, "model_path": str(tmp_path / "model.keras")}
    for columns in ("image=filepath,text=title", {"image": "filepath", "text": "title"}):
        last = format_result(result, data="kaggle.csv", columns=columns).splitlines()[-1]
        assert last.startswith(f"next: mmzoo evaluate {tmp_path / 'model.keras'} --data HELD_OUT_MANIFEST "
                               "--columns image=filepath,text=title  |  ")
