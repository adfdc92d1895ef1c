"""Tests for mmzoo/training/rundir.py: overwrite, a finished run's description, resumed history."""

import json
import os

import pytest

from mmzoo.training import RUN_OUTPUTS, RunExistsError
from mmzoo.training.rundir import csv_column, describe_run, prepare_out_dir, truncate_history


def _finished_run(out):
    os.makedirs(out / "logs")
    (out / "metrics.json").write_text(json.dumps({"model": "gated_classifier", "epochs": 3}))
    (out / "model.keras").write_text("")
    (out / "notes.txt").write_text("mine")


def _backup(out, epoch):
    os.makedirs(out / "backup")
    (out / "backup" / "training_metadata.json").write_text(json.dumps({"epoch": epoch}))


def test_a_finished_run_is_refused_or_replaced(tmp_path, capsys):
    _finished_run(tmp_path)
    assert describe_run(str(tmp_path)).startswith("gated_classifier, 3 epochs, finished ")
    with pytest.raises(RunExistsError, match="already holds a finished run .*Pass --overwrite"):
        prepare_out_dir(str(tmp_path), str(tmp_path / "backup"), False, True, 0)
    assert os.path.exists(tmp_path / "metrics.json")
    prepare_out_dir(str(tmp_path), str(tmp_path / "backup"), None, True, 1)
    assert "training again from scratch" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"], f"only the RUN_OUTPUTS {RUN_OUTPUTS} are removed"


def test_an_unfinished_run_resumes_unless_overwrite(tmp_path, capsys):
    _backup(tmp_path, 2)
    prepare_out_dir(str(tmp_path), str(tmp_path / "backup"), False, True, 1)
    assert os.path.exists(tmp_path / "backup")
    prepare_out_dir(str(tmp_path), str(tmp_path / "backup"), True, True, 1)
    assert "discarding the unfinished run's backup" in capsys.readouterr().out
    assert not os.path.exists(tmp_path / "backup")


def test_truncate_history_keeps_the_finished_epochs(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss\n0,0.9\n1,0.7\n2,0.5\n")
    truncate_history(str(path), 2)
    assert path.read_text() == "epoch,loss\n0,0.9\n1,0.7\n"
    assert csv_column(str(path), "loss") == [0.9, 0.7]
    assert csv_column(str(tmp_path / "missing.csv"), "loss") == []
    assert describe_run(str(tmp_path)) == "metrics.json"
