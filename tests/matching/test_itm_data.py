"""ITM and re-ranking training pairs (mmzoo/matching/itm_data.py): itm_pairs, make_itm_dataset,
rerank_pairs and make_rerank_dataset over the shapes records."""

import numpy as np
import pytest
import tensorflow as tf

import mmzoo
from mmzoo.datasets.shapes import shapes_tokenizer
from mmzoo.matching import itm_pairs, make_itm_dataset


def _tiny(name, **kwargs):
    """The entry at its tiny preset, reading the shapes captions' words (as the ``shapes`` preset does)."""
    kwargs.setdefault("tokenizer", shapes_tokenizer())
    return mmzoo.build(name, preset="tiny", **kwargs)


def _records(tmp_path, n=8):
    from mmzoo.data import read_manifest
    from mmzoo.datasets.shapes import generate_shapes_dataset

    return read_manifest(generate_shapes_dataset(str(tmp_path / "shapes"), num_images=n, image_size=32, seed=0))


def test_make_itm_dataset_mines_hard_negatives(tmp_path):
    records = _records(tmp_path)
    clip = _tiny("dual_encoder")
    itm = _tiny("itm_matcher")
    images, texts, image_ids, text_ids, labels = itm_pairs(records, clip, sample_from_top=1)
    num_positive = sum(len(set(r.captions)) for r in records)
    assert int(labels.sum()) >= num_positive and len(labels) == 3 * num_positive
    # The negative text of each image is the most similar non-matching caption.
    from mmzoo.evaluation.inputs import preprocess_images, tokenize_texts

    img = np.asarray(clip.embed_image(preprocess_images(images, clip.image_preprocessor)))
    txt = np.asarray(clip.embed_text(tokenize_texts(clip.tokenizer, texts)))
    sim = img @ txt.T
    own = {i: {t for i2, t, l in zip(image_ids, text_ids, labels) if i2 == i and l == 1} for i in range(len(images))}
    for k in range(0, len(labels), 3):  # (positive, negative text, negative image) triples
        i = image_ids[k + 1]
        masked = sim[i].copy()
        masked[list(own[i])] = -np.inf
        assert text_ids[k + 1] == int(np.argmax(masked))
    ds = make_itm_dataset(records, itm, dual_encoder=clip, batch_size=6)
    x, y = next(iter(ds))
    assert x["image"].shape == (6, 32, 32, 3) and x["token_ids"].dtype == tf.int32 and y.shape == (6,)
    itm.compile()
    itm.fit(ds, epochs=1, verbose=0)


def test_make_itm_dataset_without_dual_encoder_uses_random_negatives(tmp_path):
    records = _records(tmp_path, n=6)
    itm = _tiny("itm_matcher")
    _, texts, image_ids, text_ids, labels = itm_pairs(records, None, num_negatives=2, seed=1)
    assert (labels == 0).sum() > 0 and (labels == 1).sum() > 0
    ds = make_itm_dataset(records, itm, batch_size=4, shuffle=False)
    assert sum(int(np.asarray(b[1]).shape[0]) for b in ds) == len(itm_pairs(records)[4])


def test_itm_pairs_with_edited_negatives_and_a_truth_check(tmp_path):
    from mmzoo.datasets.shapes import SHAPES_WORD_GROUPS, shapes_caption_checker

    records = _records(tmp_path)
    is_match = shapes_caption_checker(32)
    images, texts, image_ids, text_ids, labels = itm_pairs(
        records, None, seed=2, word_groups=SHAPES_WORD_GROUPS, is_match=is_match
    )
    own_texts = {c for r in records for c in r.captions}
    num_positive = sum(len(set(r.captions)) for r in records)
    # (positive, negative text, negative image, edited caption) per positive pair.
    assert len(labels) == 4 * num_positive
    edited = [k for k in range(3, len(labels), 4)]
    assert all(image_ids[k] == image_ids[k - 3] for k in edited)
    assert any(texts[text_ids[k]] not in own_texts for k in edited)
    # Every label is the truth about its pair, as the shapes grammar sees it.
    by_image = {i: r for i, r in enumerate(records)}
    for i, t, label in zip(image_ids, text_ids, labels):
        assert label == float(is_match(by_image[int(i)], texts[int(t)])), (texts[int(t)], label)
    assert (labels == 0).sum() >= num_positive
    # Without the truth check an edit is a negative unless it is one of the image's own captions.
    _, texts2, image_ids2, text_ids2, labels2 = itm_pairs(records, None, seed=2, word_groups=SHAPES_WORD_GROUPS)
    for k in range(3, len(labels2), 4):
        own = set(records[int(image_ids2[k])].captions)
        assert labels2[k] == float(texts2[int(text_ids2[k])] in own)
    with pytest.raises(ValueError, match="edited_negatives"):
        itm_pairs(records, None, word_groups=SHAPES_WORD_GROUPS, edited_negatives=0)
    itm = _tiny("itm_matcher")
    ds = make_itm_dataset(records, itm, batch_size=8, word_groups=SHAPES_WORD_GROUPS, is_match=is_match)
    assert sum(int(np.asarray(b[1]).shape[0]) for b in ds) == len(labels)


def test_itm_pairs_with_relation_negatives(tmp_path):
    from mmzoo.datasets.shapes import SHAPES_RELATION_GRAMMAR, SHAPES_WORD_GROUPS, shapes_caption_checker
    from mmzoo.matching.negatives import RelationGrammar

    records = _records(tmp_path, n=12)
    is_match = shapes_caption_checker(32)
    grammar = RelationGrammar.coerce(SHAPES_RELATION_GRAMMAR)
    base = itm_pairs(records, None, seed=3, word_groups=SHAPES_WORD_GROUPS, is_match=is_match)
    images, texts, image_ids, text_ids, labels = itm_pairs(
        records, None, seed=3, word_groups=SHAPES_WORD_GROUPS, relation_grammar=SHAPES_RELATION_GRAMMAR,
        relation_negatives=2, is_match=is_match,
    )
    relation_captions = sum(bool(grammar.pattern.search(c)) for r in records for c in set(r.captions))
    assert relation_captions > 0
    # Two relation edits per relation caption, on top of the same pairs as without them.
    assert len(labels) == len(base[4]) + 2 * relation_captions
    # ... and those edits are paired with the caption's own image: its relation swapped or re-worded.
    def relation_edits(caption):
        m = grammar.pattern.search(caption)
        if m is None:
            return set()
        return {grammar.reword(caption, m, swap=True)} | {grammar.reword(caption, m, relation=r)
                                                          for r in grammar.relations if r != m.group("relation")}

    expected = {(i, e) for i, r in enumerate(records) for c in r.captions for e in relation_edits(c)}
    paired = [(int(i), texts[int(t)]) for i, t in zip(image_ids, text_ids)]
    assert sum(p in expected for p in paired) >= 2 * relation_captions
    # Every label is the truth, and the relation edits are (almost all) false.
    for i, t, label in zip(image_ids, text_ids, labels):
        assert label == float(is_match(records[int(i)], texts[int(t)]))
    assert (labels == 0).sum() > (base[4] == 0).sum() + relation_captions
    with pytest.raises(ValueError, match="relation_negatives"):
        itm_pairs(records, None, relation_grammar=SHAPES_RELATION_GRAMMAR, relation_negatives=0)
    itm = _tiny("itm_matcher")
    ds = make_itm_dataset(records, itm, batch_size=8, seed=3, word_groups=SHAPES_WORD_GROUPS,
                          relation_grammar=SHAPES_RELATION_GRAMMAR, relation_negatives=2, is_match=is_match)
    assert sum(int(np.asarray(b[1]).shape[0]) for b in ds) == len(labels)


def test_rerank_pairs_are_each_pools_first_stage_top_k(tmp_path):
    from mmzoo.datasets.shapes import shapes_caption_checker
    from mmzoo.evaluation.inputs import preprocess_images, tokenize_texts
    from mmzoo.evaluation.retrieval import embed_querybank
    from mmzoo.matching import make_rerank_dataset, rerank_pairs

    records = _records(tmp_path, n=10)
    clip = _tiny("dual_encoder")
    images, texts, image_ids, text_ids, labels = rerank_pairs(records, clip, k=2, pool_size=4)
    # Pools of 4, 4 and 2 images, each image paired with its 2 best captions OF ITS POOL.
    assert len(images) == 10 and len(labels) == 20
    assert np.array_equal(image_ids, np.repeat(np.arange(10), 2))
    pool_of = np.arange(10) // 4
    for i, t in zip(image_ids, text_ids):
        assert any(texts[t] in r.captions for r in records if pool_of[records.index(r)] == pool_of[i])
    # The candidates are the dual encoder's best two, from its own similarity matrix.
    for start in (0, 4, 8):
        pool = records[start:start + 4]
        pool_texts = list(dict.fromkeys(c for r in pool for c in r.captions))
        sim = np.asarray(clip.similarity_matrix(preprocess_images([r.image for r in pool], clip.image_preprocessor),
                                                tokenize_texts(clip.tokenizer, pool_texts)))
        for i in range(len(pool)):
            chosen = {texts[t] for t in text_ids[image_ids == start + i]}
            assert chosen == {pool_texts[t] for t in np.argsort(-sim[i])[:2]}
    # ALBEF's labels without a truth check: 1 only for the image's own captions; with it, also true ones.
    own = np.array([texts[t] in records[i].captions for i, t in zip(image_ids, text_ids)])
    assert np.array_equal(labels == 1, own)
    is_match = shapes_caption_checker(32)
    truthful = rerank_pairs(records, clip, k=2, pool_size=4, is_match=is_match)[4]
    expected = [own[n] or is_match(records[i], texts[t]) for n, (i, t) in enumerate(zip(image_ids, text_ids))]
    assert np.array_equal(truthful == 1, expected)
    # k above a pool's captions: every caption of the pool; QB-Norm from records or from their embeddings.
    everything = rerank_pairs(records[:2], clip, k=50)
    assert len(everything[4]) == 2 * len(everything[1])
    bank = _records(tmp_path / "bank", n=6)
    from_records = rerank_pairs(records, clip, k=3, querybank=bank, querybank_beta=20.0)
    from_embeddings = rerank_pairs(records, clip, k=3, querybank=embed_querybank(clip, bank), querybank_beta=20.0)
    assert from_records[1] == from_embeddings[1] and np.array_equal(from_records[3], from_embeddings[3])
    with pytest.raises(ValueError, match="k and pool_size"):
        rerank_pairs(records, clip, k=0)
    with pytest.raises(ValueError, match="no records"):
        rerank_pairs([], clip)
    with pytest.raises(ValueError, match="querybank_beta"):
        rerank_pairs(records, clip, querybank=bank, querybank_beta=0.0)
    itm = _tiny("itm_matcher")
    ds = make_rerank_dataset(records, itm, clip, k=2, pool_size=4, is_match=is_match, batch_size=8, shuffle=False)
    batches = list(ds)
    assert sum(int(y.shape[0]) for _, y in batches) == 20
    assert batches[0][0]["image"].shape == (8, 32, 32, 3)
    np.testing.assert_array_equal(np.concatenate([np.asarray(y) for _, y in batches]), truthful)
