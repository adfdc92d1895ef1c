"""benchmarks/epoch_inputs.py: a one-round run follows the report contract; its reference is the old input."""

import numpy as np

from benchmarks import epoch_inputs, run
from mmzoo.data import read_manifest
from mmzoo.datasets.shapes import generate_shapes_splits
from mmzoo.training import build_for_data
from mmzoo.training.inputs import epoch_datasets


def test_one_round_follows_the_contract():
    report, res = epoch_inputs.main(["--epochs", "2", "--images", "40", "--batch-size", "16", "--rounds", "1"])
    run.check_report(report, "epoch_inputs")
    assert res["ratio"] > 0 and res["one_build_s"] > 0 and res["per_epoch_build_s"] > 0
    assert "2 epochs of 40 32x32 images" in report["rows"][0]["figure"]


def test_the_reference_gives_the_batches_mmzoo_train_gets(tmp_path):
    records = read_manifest(generate_shapes_splits(tmp_path, num_train=20, num_val=0, num_test=0, image_size=16)["train"])
    model = build_for_data("gated_classifier", records, preset="tiny", overrides={"image_size": [16, 16]})
    ours = list(epoch_datasets(records, model, 8, 3, 0, 2).as_numpy_iterator())
    reference = list(epoch_inputs.per_epoch_datasets(records, model, 8, 3, 2, None).as_numpy_iterator())
    assert len(ours) == len(reference) == 6
    for (x, y), (rx, ry) in zip(ours, reference):
        np.testing.assert_array_equal(x["token_ids"], rx["token_ids"])
        np.testing.assert_array_equal(x["image"], rx["image"])
        np.testing.assert_array_equal(y, ry)
