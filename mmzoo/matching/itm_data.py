"""Training data for image-text matching (ITM) cross-encoders.

An ITM model learns ``P(match | image, text)`` from positive pairs and
negatives. Random negatives are mostly easy; ALBEF/BLIP mine *hard* negatives,
pairs a dual encoder finds similar but that do not match. ``make_itm_dataset``
builds a ``tf.data.Dataset`` of ``({"image", "token_ids"}, label)`` batches
from manifest records:

* every (image, caption) of the records is a positive (label 1);
* for every positive, ``num_negatives`` captions for its image and
  ``num_negatives`` images for its caption are negatives (label 0): with a
  ``dual_encoder``, drawn among the ``sample_from_top`` most similar
  non-matching ones (hard negatives), otherwise uniformly at random among
  the non-matching ones;
* with ``word_groups``, the image's own captions with one phrase changed
  (a colour, a size, a relation, or two colours exchanged) are negatives
  too: compositional negatives (NegCLIP) that differ from a positive only in
  the detail the model has to look at;
* with ``relation_grammar``, the image's own relation captions ("A left of
  B") with subject and object swapped or another relation phrase are
  negatives too (``negatives.RelationGrammar``): single-phrase edits
  rarely produce them;
* with ``is_match`` (the data's truth check), any negative that is in fact
  true of its image is labelled 1. Mined negatives in templated data are
  often paraphrases of the image's own captions: labelled 0, they are noise.

Captions are compared by exact string: a caption identical to one of the
image's own captions is never used as its negative (frequent in templated
data such as the built-in shapes captions).

Mining happens once per call; call it again with another ``seed`` per epoch
(or after further dual-encoder training) for fresh negatives.
"""

from __future__ import annotations

import numpy as np

from mmzoo.evaluation.inputs import preprocess_images, record_image_key, records_to_retrieval_set, tokenize_texts
from mmzoo.evaluation.retrieval import embed_querybank, first_stage_scale_and_querybank
from mmzoo.matching.mining import mine_hard_negatives
from mmzoo.metrics.retrieval import invert_positives, querybank_log_normalizer
from mmzoo.preprocessing.tracing import as_written


def _random_negatives(positive_lists, num_keys, num_negatives, rng):
    out = np.zeros((len(positive_lists), num_negatives), dtype=np.int64)
    for q, pos in enumerate(positive_lists):
        candidates = np.setdiff1d(np.arange(num_keys), pos)
        if len(candidates) == 0:
            candidates = np.arange(num_keys)
        out[q] = rng.choice(candidates, size=num_negatives, replace=len(candidates) < num_negatives)
    return out


def _first_records(records):
    """The first record of every unique image, in ``records_to_retrieval_set`` order."""
    seen: dict = {}
    for record in records:
        seen.setdefault(record_image_key(record), record)
    return list(seen.values())


def _check_itm_arguments(num_negatives, word_groups, edited_negatives, relation_grammar, relation_negatives):
    """Check ``itm_pairs``' counts; returns ``relation_grammar`` as a ``RelationGrammar`` (or ``None``)."""
    if num_negatives < 1:
        raise ValueError(f"num_negatives must be at least 1. Received: num_negatives={num_negatives}")
    if word_groups is not None and edited_negatives < 1:
        raise ValueError(
            f"edited_negatives must be at least 1 with word_groups. Received: edited_negatives={edited_negatives}"
        )
    if relation_grammar is not None:
        from mmzoo.matching.negatives import RelationGrammar

        relation_grammar = RelationGrammar.coerce(relation_grammar)
        if relation_negatives < 1:
            raise ValueError(
                "relation_negatives must be at least 1 with relation_grammar. "
                f"Received: relation_negatives={relation_negatives}"
            )
    return relation_grammar


def _image_to_texts(text_to_images, num_images):
    """For every image, the indices of the texts that match it."""
    image_to_texts: list[list[int]] = [[] for _ in range(num_images)]
    for t, ims in enumerate(text_to_images):
        for i in ims:
            image_to_texts[i].append(t)
    return image_to_texts


def _hard_negatives(dual_encoder, images, texts, image_to_texts, text_to_images, *, num_negatives,
                    sample_from_top, seed, batch_size):
    """``(neg_texts, neg_images)`` mined among the ``dual_encoder``'s most similar non-matches."""
    pixels = preprocess_images(images, dual_encoder.image_preprocessor, batch_size)
    image_emb = np.asarray(dual_encoder.image_encoder.predict(pixels, batch_size=batch_size, verbose=0))
    token_ids = tokenize_texts(dual_encoder.tokenizer, texts)
    text_emb = np.asarray(dual_encoder.text_encoder.predict(token_ids, batch_size=256, verbose=0))
    top = max(sample_from_top, num_negatives)
    neg_texts = mine_hard_negatives(
        image_emb, text_emb, image_to_texts, num_negatives=num_negatives, sample_from_top=top, seed=seed
    )
    neg_images = mine_hard_negatives(
        text_emb, image_emb, text_to_images, num_negatives=num_negatives, sample_from_top=top, seed=seed + 1
    )
    return neg_texts, neg_images


def _edited_captions(caption, groups, edited_negatives, relation_grammar, relation_negatives, rng):
    """Word-swap then relation edits of ``caption`` (``None`` where no edit applies)."""
    edits = []
    if groups:
        from mmzoo.matching.negatives import word_swap_negative

        edits = [word_swap_negative(caption, groups, rng) for _ in range(edited_negatives)]
    if relation_grammar is not None:
        edits += [relation_grammar.negative(caption, rng) for _ in range(relation_negatives)]
    return edits


def _pairs_with_negatives(texts, image_to_texts, neg_texts, neg_images, num_negatives, edit):
    """Every positive pair, its ``num_negatives`` text and image negatives and its edits.

    ``edit(caption)`` gives the edited captions of a positive; new ones are
    appended to the returned copy of ``texts``. Returns
    ``(texts, image_ids, text_ids, labels)`` as arrays.
    """
    text_index = {t: k for k, t in enumerate(texts)}
    texts = list(texts)
    image_ids, text_ids, labels = [], [], []
    for i, own in enumerate(image_to_texts):
        for t in own:
            image_ids.append(i), text_ids.append(t), labels.append(1.0)
            for n in range(num_negatives):
                # A negative text for the image and a negative image for the text.
                image_ids.append(i), text_ids.append(int(neg_texts[i, n])), labels.append(0.0)
                image_ids.append(int(neg_images[t, n])), text_ids.append(t), labels.append(0.0)
            for edited in edit(texts[t]):
                if edited is None:  # no phrase of any group, or no relation
                    continue
                k = text_index.get(edited)
                if k is None:
                    k = text_index[edited] = len(texts)
                    texts.append(edited)
                image_ids.append(i), text_ids.append(k), labels.append(0.0)
    labels = np.asarray(labels, np.float32)
    image_ids, text_ids = np.asarray(image_ids, dtype=np.int64), np.asarray(text_ids, dtype=np.int64)
    return texts, image_ids, text_ids, labels


def _relabel_true_negatives(labels, image_ids, text_ids, texts, text_to_images, image_records, is_match):
    """Set ``labels`` to 1 (in place) for negatives that in fact match their image."""
    num_own = len(text_to_images)
    for k in np.flatnonzero(labels == 0):
        i, t = int(image_ids[k]), int(text_ids[k])
        if (t < num_own and i in text_to_images[t]) or (
            image_records is not None and is_match(image_records[i], texts[t])
        ):
            labels[k] = 1.0


def itm_pairs(
    records,
    dual_encoder=None,
    *,
    num_negatives: int = 1,
    sample_from_top: int = 8,
    seed: int = 0,
    batch_size: int = 64,
    word_groups=None,
    edited_negatives: int = 1,
    relation_grammar=None,
    relation_negatives: int = 1,
    is_match=None,
):
    """The (image, text, label) triples ``make_itm_dataset`` trains on.

    Args:
        records, dual_encoder, num_negatives, sample_from_top, seed,
            batch_size: as ``make_itm_dataset``.
        word_groups: lists of interchangeable phrases (colours, sizes,
            relations...). When given, every positive pair also gets
            ``edited_negatives`` *edited* captions for its image: the caption
            with one phrase replaced or two exchanged
            (``negatives.word_swap_negative``, NegCLIP-style).
        edited_negatives: edited captions per positive pair (with
            ``word_groups``).
        relation_grammar: a ``negatives.RelationGrammar`` (or a mapping of
            its arguments, e.g. ``mmzoo.datasets.shapes.SHAPES_RELATION_GRAMMAR``). When
            given, every positive caption holding a relation ("A rel B")
            also gets ``relation_negatives`` captions with that relation
            made false: subject and object swapped, or another relation.
        relation_negatives: relation edits per positive relation caption
            (with ``relation_grammar``).
        is_match: optional ``fn(record, caption) -> bool``, the data's own
            truth check (``mmzoo.datasets.shapes.shapes_caption_checker(size)`` for the
            built-in shapes). Every negative it calls true is labelled 1:
            mined "negatives" that are paraphrases of the image's captions,
            and edits that happen to stay true, would otherwise teach the
            model that true pairs do not match.

    Returns ``(images, texts, image_ids, text_ids, labels)``: the unique
    images and texts (edited captions appended after the records' own), and
    aligned int arrays of pairs with 1/0 labels.
    """
    relation_grammar = _check_itm_arguments(
        num_negatives, word_groups, edited_negatives, relation_grammar, relation_negatives
    )
    images, texts, text_to_images = records_to_retrieval_set(records)
    image_to_texts = _image_to_texts(text_to_images, len(images))
    rng = np.random.default_rng(seed)
    if dual_encoder is not None:
        neg_texts, neg_images = _hard_negatives(
            dual_encoder, images, texts, image_to_texts, text_to_images,
            num_negatives=num_negatives, sample_from_top=sample_from_top, seed=seed, batch_size=batch_size,
        )
    else:
        neg_texts = _random_negatives(image_to_texts, len(texts), num_negatives, rng)
        neg_images = _random_negatives(text_to_images, len(images), num_negatives, rng)
    groups = None
    if word_groups is not None:
        from mmzoo.matching.negatives import normalize_word_groups

        groups = normalize_word_groups(word_groups)

    def edit(caption):
        return _edited_captions(caption, groups, edited_negatives, relation_grammar, relation_negatives, rng)

    texts, image_ids, text_ids, labels = _pairs_with_negatives(
        texts, image_to_texts, neg_texts, neg_images, num_negatives, edit
    )
    # A "negative" can still match: a caption shared with the image (exact
    # string), or one the data's truth check accepts. Label it truthfully.
    image_records = _first_records(records) if is_match is not None else None
    _relabel_true_negatives(labels, image_ids, text_ids, texts, text_to_images, image_records, is_match)
    return images, texts, image_ids, text_ids, labels


def make_itm_dataset(
    records,
    itm_model,
    dual_encoder=None,
    *,
    batch_size: int = 32,
    num_negatives: int = 1,
    sample_from_top: int = 8,
    shuffle: bool = True,
    repeat: bool = False,
    seed: int = 0,
    word_groups=None,
    edited_negatives: int = 1,
    relation_grammar=None,
    relation_negatives: int = 1,
    is_match=None,
):
    """A ``tf.data.Dataset`` of ``({"image", "token_ids"}, label)`` for ``itm_model.fit``.

    Args:
        records: manifest records (``mmzoo.data.read_manifest``).
        itm_model: the ``ITMMatcher`` to train (its tokenizer and image size
            are used).
        dual_encoder: a trained ``DualEncoder`` to mine hard negatives with;
            ``None`` uses random negatives.
        batch_size: pairs per batch.
        num_negatives: negative texts per image and negative images per text,
            for every positive pair (``1`` gives one positive for two
            negatives, as ALBEF).
        sample_from_top: hard negatives are drawn among this many most
            similar non-matching items.
        shuffle, repeat, seed: the usual ``tf.data`` options.
        word_groups, edited_negatives: compositional negatives, the image's
            own captions with one colour/size/relation... changed
            (``itm_pairs``).
        relation_grammar, relation_negatives: relation negatives, the
            image's own "A rel B" captions with subject and object swapped or
            another relation (``itm_pairs``).
        is_match: the data's truth check ``fn(record, caption) -> bool``;
            negatives it accepts are labelled 1 (``itm_pairs``).

    Example:

    >>> import mmzoo
    >>> from mmzoo.data import read_manifest
    >>> itm = mmzoo.build("itm_matcher", preset="tiny")
    >>> # ds = make_itm_dataset(read_manifest("data/manifest.jsonl"), itm, dual_encoder=clip)
    >>> # itm.fit(ds, epochs=1)
    """
    images, texts, image_ids, text_ids, labels = itm_pairs(
        records, dual_encoder, num_negatives=num_negatives, sample_from_top=sample_from_top, seed=seed,
        word_groups=word_groups, edited_negatives=edited_negatives, relation_grammar=relation_grammar,
        relation_negatives=relation_negatives, is_match=is_match,
    )
    return _pairs_dataset(images, texts, image_ids, text_ids, labels, itm_model, batch_size=batch_size,
                          shuffle=shuffle, repeat=repeat, seed=seed)


def _pairs_dataset(images, texts, image_ids, text_ids, labels, itm_model, *, batch_size, shuffle, repeat, seed):
    """``({"image", "token_ids"}, label)`` batches of aligned pairs; images decoded on the fly."""
    import tensorflow as tf

    token_ids = tokenize_texts(itm_model.tokenizer, texts)
    is_path = np.array([isinstance(im, str) for im in images])
    data = np.array([im.encode("utf-8") if isinstance(im, str) else bytes(im) for im in images], dtype=object)
    ds = tf.data.Dataset.from_tensor_slices(
        (data[image_ids], is_path[image_ids], token_ids[text_ids], labels)
    )
    if shuffle:
        ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    decode_one = itm_model.image_preprocessor.decode_one

    def load(value, path_flag, tokens, label):
        raw = tf.cond(path_flag, lambda: tf.io.read_file(value), lambda: value)
        return {"image": decode_one(raw), "token_ids": tokens}, label

    ds = ds.map(as_written(load), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def rerank_pairs(
    records,
    dual_encoder,
    *,
    k: int = 10,
    pool_size: int = 1000,
    querybank=None,
    querybank_beta: float | None = None,
    batch_size: int = 256,
    is_match=None,
):
    """The (image, text, label) triples of a re-ranker trained on what it will re-rank.

    ``itm_pairs`` mines negatives among the dual encoder's most similar
    captions of the whole set, and edits captions. A re-ranker at test time
    (``evaluate_matcher(rerank_model=..., rerank_k=k)``) sees something
    narrower: each image's first-stage top ``k`` among the captions of the
    images evaluated with it. This builds exactly that from training
    records, as retrieval re-rankers are trained on their first stage's
    candidates: the records are split into pools of ``pool_size`` images (the
    size of the evaluation set), and within each pool every image is paired
    with the ``k`` captions the dual encoder ranks first for it (after
    querybank normalisation with ``querybank``, as ``evaluate_matcher`` does).

    Args:
        records: manifest records, ideally with several captions per image
            as the evaluation records have (their captions are the
            candidates).
        dual_encoder: the trained ``DualEncoder`` whose top-k is re-ranked.
        k: candidates per image (``evaluate_matcher``'s ``rerank_k``).
        pool_size: images per pool; the last pool may be smaller.
        querybank, querybank_beta: as ``evaluate_matcher`` (records or
            images not in ``records``, or their ``embed_querybank`` result;
            the temperature defaults to the dual encoder's logit scale).
        batch_size: images per embedding batch.
        is_match: ``fn(record, caption) -> bool``, the data's truth check.
            With it a candidate is labelled 1 when it is true of the image
            (a verifier for a truth gate, ``evaluate_matcher(...,
            rerank_threshold=t)``); without it only the image's own captions
            are (ALBEF's labels: a true caption of another image is a
            negative).

    Returns ``(images, texts, image_ids, text_ids, labels)`` as ``itm_pairs``
    does: ``pool images x min(k, pool captions)`` pairs.
    """
    if k < 1 or pool_size < 1:
        raise ValueError(f"k and pool_size must be positive. Received: k={k}, pool_size={pool_size}")
    records = list(records)
    if not records:
        raise ValueError("rerank_pairs needs records with images and captions. Received: no records")
    scale, querybank = first_stage_scale_and_querybank(dual_encoder, querybank, querybank_beta, batch_size)
    bank = None if querybank is None else querybank.images
    images, texts, image_ids, text_ids, labels = [], [], [], [], []
    text_index: dict[str, int] = {}
    for start in range(0, len(records), pool_size):
        pool = records[start : start + pool_size]
        pool_images, pool_texts, text_to_images = records_to_retrieval_set(pool)
        embedded = embed_querybank(dual_encoder, pool, batch_size)  # images and captions in the same order
        logits = scale * (embedded.images @ embedded.texts.T)
        if bank is not None:
            logits = logits - querybank_log_normalizer(bank, embedded.texts, scale)[None, :]
        top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
        own = invert_positives(text_to_images, len(pool_images))  # each image's own caption indices
        pool_records = _first_records(pool) if is_match is not None else None
        offset = len(images)
        images.extend(pool_images)
        for i, row in enumerate(top):
            for t in row:
                t = int(t)
                caption = pool_texts[t]
                g = text_index.get(caption)
                if g is None:
                    g = text_index[caption] = len(texts)
                    texts.append(caption)
                image_ids.append(offset + i), text_ids.append(g)
                labels.append(float(t in own[i] or (pool_records is not None and is_match(pool_records[i], caption))))
    return (images, texts, np.asarray(image_ids, np.int64), np.asarray(text_ids, np.int64),
            np.asarray(labels, np.float32))


def make_rerank_dataset(
    records,
    itm_model,
    dual_encoder,
    *,
    k: int = 10,
    pool_size: int = 1000,
    querybank=None,
    querybank_beta: float | None = None,
    is_match=None,
    batch_size: int = 128,
    shuffle: bool = True,
    repeat: bool = False,
    seed: int = 0,
):
    """A ``tf.data.Dataset`` of ``rerank_pairs`` for ``itm_model.fit``: fine-tune a re-ranker on its test-time candidates.

    Args:
        records, dual_encoder, k, pool_size, querybank, querybank_beta,
            is_match: as ``rerank_pairs``.
        itm_model: the ``ITMMatcher`` to train (its tokenizer and image
            preprocessing are used).
        batch_size, shuffle, repeat, seed: the usual ``tf.data`` options.

    The pairs depend only on the dual encoder, so one call serves every
    epoch (``shuffle`` reshuffles each one). Typically run after
    ``make_itm_dataset`` training, at a lower learning rate
    (``benchmarks/retrieval.py --itm-rerank-images`` measures the gain).
    """
    images, texts, image_ids, text_ids, labels = rerank_pairs(
        records, dual_encoder, k=k, pool_size=pool_size, querybank=querybank, querybank_beta=querybank_beta,
        is_match=is_match,
    )
    return _pairs_dataset(images, texts, image_ids, text_ids, labels, itm_model, batch_size=batch_size,
                          shuffle=shuffle, repeat=repeat, seed=seed)
