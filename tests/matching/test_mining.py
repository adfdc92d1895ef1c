import numpy as np
import pytest

from mmzoo.matching import hard_negative_indices, mine_hard_negatives


def test_in_batch_picks_the_most_similar_non_matching_item():
    sim = np.array(
        [
            [0.9, 0.2, 0.85, 0.1],
            [0.3, 0.8, 0.1, 0.79],
            [0.95, 0.4, 0.5, 0.3],
        ],
        "float32",
    )
    positives = np.eye(3, 4, dtype=bool)
    np.testing.assert_array_equal(np.asarray(hard_negative_indices(sim, positives))[:, 0], [2, 3, 0])
    top2 = np.asarray(hard_negative_indices(sim, positives, num_negatives=2))
    np.testing.assert_array_equal(top2, [[2, 1], [3, 0], [0, 1]])


def test_in_batch_never_returns_a_positive_even_if_most_similar():
    sim = np.array([[0.1, 0.99, 0.98, 0.5]], "float32")
    positives = np.array([[True, True, True, False]])
    assert int(hard_negative_indices(sim, positives)[0, 0]) == 3


def test_dataset_mining_chunks_and_multiple_positives():
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(37, 8)).astype("float32")
    keys = rng.normal(size=(50, 8)).astype("float32")
    positives = [[i, (i + 1) % 50] for i in range(37)]
    got = mine_hard_negatives(queries, keys, positives, num_negatives=3, chunk_size=5)
    sim = queries @ keys.T
    for i, pos in enumerate(positives):
        sim[i, pos] = -np.inf
    expected = np.argsort(-sim, axis=1, kind="stable")[:, :3]
    np.testing.assert_array_equal(got, expected)


def test_sampling_from_the_top_stays_in_the_top_and_excludes_positives():
    rng = np.random.default_rng(1)
    queries = rng.normal(size=(20, 4)).astype("float32")
    keys = rng.normal(size=(30, 4)).astype("float32")
    got = mine_hard_negatives(queries, keys, list(range(20)), num_negatives=2, sample_from_top=5, seed=3)
    sim = queries @ keys.T
    sim[np.arange(20), np.arange(20)] = -np.inf
    top5 = np.argsort(-sim, axis=1)[:, :5]
    for i in range(20):
        assert set(got[i]) <= set(top5[i]) and i not in got[i] and len(set(got[i])) == 2


def test_bad_arguments():
    q = np.ones((2, 3), "float32")
    with pytest.raises(ValueError, match="same D"):
        mine_hard_negatives(q, np.ones((2, 4), "float32"), [0, 1])
    with pytest.raises(ValueError, match="one entry per query"):
        mine_hard_negatives(q, q, [0])
    with pytest.raises(ValueError, match="num_negatives"):
        hard_negative_indices(q, q > 2, num_negatives=0)
