import numpy as np
import pytest
import tensorflow as tf

from mmzoo.datasets.shapes import shapes_tokenizer
from mmzoo.losses import token_groups_from_words, token_swap_negatives

GROUPS = [[10, 11, 12], [20, 21], [30, 31]]
GROUP_OF = {t: g for g, ids in enumerate(GROUPS) for t in ids}


def _random_batch(seed, rows=64, length=9):
    rng = np.random.default_rng(seed)
    pool = [1, 2, 3, 4, 5] + [t for g in GROUPS for t in g]
    ids = rng.choice(pool, size=(rows, length))
    ids[:4] = [1, 2, 3, 4, 5, 1, 2, 0, 0]  # rows without any group token
    return ids.astype("int32")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_edit_is_one_replacement_or_one_exchange_within_a_group(seed):
    ids = _random_batch(seed)
    edited, has = token_swap_negatives(ids, GROUPS, seed=seed)
    edited, has = edited.numpy(), has.numpy()
    kinds = set()
    for row, new, flag in zip(ids, edited, has):
        changed = np.flatnonzero(row != new)
        if not any(t in GROUP_OF for t in row):
            assert not flag and not len(changed)
            continue
        assert flag
        if len(changed) == 1:
            (i,) = changed
            assert GROUP_OF[row[i]] == GROUP_OF[new[i]] and row[i] != new[i]
            kinds.add("replacement")
        else:
            assert len(changed) == 2, (row, new)
            i, j = changed
            assert new[i] == row[j] and new[j] == row[i] and GROUP_OF[row[i]] == GROUP_OF[row[j]]
            kinds.add("exchange")
    assert kinds == {"replacement", "exchange"}


def test_exchange_probability_chooses_the_kind_of_edit():
    ids = np.array([[1, 10, 20, 2, 11, 21]] * 32, "int32")  # two colours, two shapes: exchanges possible
    always, _ = token_swap_negatives(ids, GROUPS, seed=3, exchange_probability=1.0)
    never, _ = token_swap_negatives(ids, GROUPS, seed=3, exchange_probability=0.0)
    assert all(np.sum(row != ids[0]) == 2 for row in always.numpy())
    assert all(np.sum(row != ids[0]) == 1 for row in never.numpy())
    # Every member of a group is drawn as a replacement (uniform over the others).
    colours = {int(row[1]) for row in never.numpy() if row[1] != 10}
    assert colours == {11, 12}
    with pytest.raises(ValueError, match="exchange_probability"):
        token_swap_negatives(ids, GROUPS, exchange_probability=1.5)


def test_same_seed_same_edits_other_seed_other_edits():
    ids = _random_batch(7)
    a, _ = token_swap_negatives(ids, GROUPS, seed=11)
    b, _ = token_swap_negatives(ids, GROUPS, seed=11)
    c, _ = token_swap_negatives(ids, GROUPS, seed=12)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert np.any(a.numpy() != c.numpy())


def test_it_runs_in_a_graph_with_unknown_batch_and_length():
    fn = tf.function(lambda x: token_swap_negatives(x, GROUPS, seed=0),
                     input_signature=[tf.TensorSpec([None, None], tf.int32)])
    edited, has = fn(tf.constant([[10, 20, 0], [1, 2, 3]]))
    assert has.numpy().tolist() == [True, False]
    assert edited.numpy()[1].tolist() == [1, 2, 3]


def test_bad_groups_are_named():
    with pytest.raises(ValueError, match="at least two different tokens"):
        token_swap_negatives([[1, 2]], [[5, 5]])
    with pytest.raises(ValueError, match="one group only"):
        token_swap_negatives([[1, 2]], [[5, 6], [6, 7]])
    with pytest.raises(ValueError, match="non-negative int"):
        token_swap_negatives([[1, 2]], [[5, "red"]])
    with pytest.raises(ValueError, match=r"\[batch, length\]"):
        token_swap_negatives([1, 2], GROUPS)


def test_token_groups_from_words_keeps_one_word_phrases_of_the_vocabulary():
    tokenizer = shapes_tokenizer()
    vocab = tokenizer.get_vocabulary()
    groups = token_groups_from_words(tokenizer, [["Red", "blue", "zebra"], ["left of", "above", "below"], ["small"]])
    assert [[vocab[t] for t in g] for g in groups] == [["red", "blue"], ["above", "below"]]
    with pytest.raises(ValueError, match="None of the word groups"):
        token_groups_from_words(tokenizer, [["zebra", "okapi"], ["left of", "right of"]])


def test_shapes_token_groups_edit_real_captions_into_false_ones():
    from mmzoo.datasets.shapes import SHAPES_TOKEN_GROUPS, shapes_caption_checker, shapes_records

    tokenizer = shapes_tokenizer()
    groups = token_groups_from_words(tokenizer, SHAPES_TOKEN_GROUPS)
    assert [len(g) for g in groups] == [len(g) for g in SHAPES_TOKEN_GROUPS]  # every word is in the vocabulary
    records = [r for r in shapes_records(150, image_size=32, seed=5) for _ in r.captions]
    captions = [c for r in shapes_records(150, image_size=32, seed=5) for c in r.captions]
    edited, has = token_swap_negatives(tokenizer(tf.constant(captions)), groups, seed=0)
    texts = [t.decode() for t in tokenizer.detokenize(edited).numpy()]
    assert bool(np.all(has.numpy()))  # every caption names a colour and a shape
    is_true = shapes_caption_checker(32)
    false = [not is_true(r, t) for r, t in zip(records, texts)]
    assert np.mean(false) > 0.97, [t for t, f in zip(texts, false) if not f][:5]
