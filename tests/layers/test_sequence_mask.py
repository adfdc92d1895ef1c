import numpy as np
import pytest

from mmzoo.layers.sequence_mask import SequenceMask
from tests.harness import run_layer_checks


def test_standard_checks_padding(tmp_path):
    out = run_layer_checks(
        lambda: SequenceMask(padding_id=0),
        np.array([[4, 5, 0], [1, 0, 0]], "int32"),
        tmp_path=tmp_path,
        expected_output_shape=(2, 3),
    )
    assert np.asarray(out).tolist() == [[True, True, False], [True, False, False]]


def test_standard_checks_all_true(tmp_path):
    out = run_layer_checks(
        lambda: SequenceMask(),
        np.zeros((2, 5, 3), "float32"),
        tmp_path=tmp_path,
        expected_output_shape=(2, 5),
    )
    assert out.dtype == "bool" and bool(np.all(np.asarray(out)))


def test_bad_padding_id():
    with pytest.raises(ValueError, match="padding_id"):
        SequenceMask(padding_id="0")
