"""Re-ranking experiments on the models ``benchmarks/retrieval.py --save-dir DIR`` keeps.

Analyses of "can the ITM model raise the strict image->text R@1" (results
and discussion in benchmarks/README.md, Retrieval):

* ``gate``: keep the QB-Norm order among the top-10 captions the ITM accepts
  (probability >= t), for several t, and with the grammar as a perfect truth
  filter (the bound of any truth filter); and the two score fusions of
  ``evaluate_matcher`` (QB-Norm logit + w * ITM log-odds or log-probability);
* ``listwise``: fine-tune the ITM as a strict, listwise re-ranker of the
  QB-Norm top 10 (softmax over first-stage logit + ITM log-odds, the image's
  own references as targets) on new images with three captions each, in
  pools of 1,000 as in the held-out protocol; R@1 per fusion weight on the
  validation and held-out images after each epoch;
* ``strict``: fine-tune the ITM pointwise (binary cross-entropy, the ALBEF
  objective) on the QB-Norm top 10 of new images in pools of 1,000, labelled
  1 only for the image's own references (a true caption of another image is
  a negative); R@1 per fusion and weight after each epoch;
* ``truth``: the same fine-tuning, labelled by the grammar's truth of each
  candidate: a verifier trained on the very candidates it gates; ``gate``'s
  figures after each epoch;
* ``strict_probe``: the same candidates and targets for a re-ranker that sees
  only the dual encoder's frozen embeddings: an MLP on ``[u, v, u * v]``
  trained listwise as a residual of the QB-Norm logit;
* ``probe``: a truth verifier without the cross-encoder: an MLP on the dual
  encoder's frozen embeddings ``[u, v, u * v]``, trained on the QB-Norm top 12
  of training images (pools of 3,000 captions, labelled by the grammar's
  truth); its AUC on the truth of the held-out top 10 next to the ITM's, and
  the same gate / log-probability fusion as ``gate``;
* ``specificity``: the Bayes score of the protocol (truth of the caption, and
  how rare it is in the population) with the ITM as the truth model: each
  top-10 caption's frequency is the sum of the ITM's probabilities over the
  ``--neighbours`` training images the dual encoder puts nearest to it
  (``log p_ITM(i, t) - log(eps + sum_b p_ITM(b, t))``, alone or added to the
  QB-Norm logit); the same with the grammar as a perfect truth model (the
  bound of this rule); and how well the ITM tells true from false captions
  in the top 10 (accuracy, AUC);
* ``ambiguity``: how much of the top-10 truth the pixels decide (relations
  and regions are thresholds on the shapes' centres): the share of
  candidates whose truth changes when the centres move by up to 0.25, 0.5
  or 1 px, the truth gates that know only the clear cases, and how many of
  the ITM's truth errors are such cases;
* ``errors``: the ITM's truth errors in the top 10 by what each caption's
  relation gets right (true, subject and object swapped, another relation
  word, objects wrong, no relation).

    MMZOO_RETRIEVAL_SAVE_DIR=runs/retrieval python -m benchmarks.retrieval --data-dir runs/retrieval_data
    python -m benchmarks.experiments.retrieval_rerank gate --models runs/retrieval --data runs/retrieval_data --beta 20.5
    python -m benchmarks.experiments.retrieval_rerank listwise --models runs/retrieval --data runs/retrieval_data --beta 20.5
    python -m benchmarks.experiments.retrieval_rerank specificity --models runs/retrieval --data runs/retrieval_data --beta 20.5
    python -m benchmarks.experiments.retrieval_rerank probe --models runs/retrieval --data runs/retrieval_data --beta 20.5
    python -m benchmarks.experiments.retrieval_rerank strict --models runs/retrieval --data runs/retrieval_data --beta 20.5 --images 20000
    python -m benchmarks.experiments.retrieval_rerank truth --models runs/retrieval --data runs/retrieval_data --beta 20.5 --images 20000
    python -m benchmarks.experiments.retrieval_rerank truth --models runs/retrieval --data runs/retrieval_data --beta 20.5 --images 20000 --relation-pairs 20000
    python -m benchmarks.experiments.retrieval_rerank strict_probe --models runs/retrieval --data runs/retrieval_data --beta 20.5 --images 20000
    python -m benchmarks.experiments.retrieval_rerank ambiguity --models runs/retrieval --data runs/retrieval_data --beta 20.5
    python -m benchmarks.experiments.retrieval_rerank errors --models runs/retrieval --data runs/retrieval_data --beta 20.5

The candidate lists of ``listwise`` / ``strict`` / ``truth`` / ``strict_probe`` are cached in ``--work-dir`` (per ``--images``).

``--beta`` is the QB-Norm temperature the benchmark chose on validation (it prints it).
Not run by ``python -m benchmarks.run`` (it lives in ``benchmarks.experiments``): these are analyses, not figures with a goal.
"""
import argparse
import json
import os
import time
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import mmzoo  # noqa: E402
from mmzoo.data import read_manifest
from mmzoo.datasets.shapes import (
    SHAPES_RELATION_GRAMMAR,
    generate_shapes_dataset,
    shapes_caption_checker,
    shapes_possible_captions,
)
from mmzoo.evaluation.inputs import preprocess_images, records_to_retrieval_set, tokenize_texts  # noqa: E402
from mmzoo.evaluation.retrieval import QuerybankEmbeddings, pair_scorer
from mmzoo.matching.negatives import RelationGrammar  # noqa: E402
from mmzoo.metrics.retrieval import querybank_log_normalizer, transform_probability

K = 10


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("analysis", choices=("gate", "listwise", "strict", "truth", "strict_probe", "specificity", "probe", "ambiguity", "errors"))
    p.add_argument("--models", required=True, help="dual_encoder.keras and itm_matcher.keras (retrieval.py --save-dir)")
    p.add_argument("--data", required=True, help="retrieval.py --data-dir (train/, val/, test/ manifests)")
    p.add_argument("--beta", type=float, required=True, help="QB-Norm temperature")
    p.add_argument("--querybank-images", type=int, default=10000)
    p.add_argument("--epochs", type=int, default=3, help="listwise / strict / truth: epochs")
    p.add_argument("--images", type=int, default=3000, help="listwise / strict / truth / strict_probe: new training images (3 captions each)")
    p.add_argument("--learning-rate", type=float, default=3e-4)
    p.add_argument("--work-dir", default="/tmp/mmzoo_rerank_experiment")
    p.add_argument("--neighbours", type=int, default=128, help="specificity: bank images scored per caption")
    p.add_argument("--probe-images", type=int, default=20000, help="probe: training images (the first ones)")
    p.add_argument("--probe-epochs", type=int, default=8)
    p.add_argument("--probe-units", type=int, default=512, help="strict_probe: MLP width")
    p.add_argument("--relation-pairs", type=int, default=0, metavar="IMAGES",
                   help="strict / truth: mix the lists 1:1 with subject/object swaps of the true relation captions "
                        "of this many training images (relation_pairs)")
    p.add_argument("--save", help="strict / truth: save the fine-tuned ITM here (.keras)")
    return p.parse_args(argv)


class Setup:
    def __init__(self, args):
        self.args = args
        self.clip = mmzoo.load_model(os.path.join(args.models, "dual_encoder.keras"))
        self.itm = mmzoo.load_model(os.path.join(args.models, "itm_matcher.keras"))
        self.train = read_manifest(os.path.join(args.data, "train", "manifest.jsonl"))
        self.bank_records = self.train[-args.querybank_images:]
        # Decoded once: QB-Norm embeds them, `specificity` scores them with the ITM (same image size).
        self.bank_pixels = preprocess_images([r.image for r in self.bank_records], self.clip.image_preprocessor, 256)
        self.bank = QuerybankEmbeddings(self.clip.image_encoder.predict(self.bank_pixels, batch_size=256, verbose=0))
        self.splits = {s: read_manifest(os.path.join(args.data, s, "manifest.jsonl")) for s in ("val", "test")}
        self._candidates = {}

    def candidates(self, split):
        """The split's QB-Norm top ``K`` (everything of ``top_k_lists`` but the ITM), computed once.

        The dual encoder never changes within a run; the ITM may (``truth``,
        ``strict`` and ``listwise`` evaluate after every epoch), so only its
        pass is repeated.
        """
        if split not in self._candidates:
            records = self.splits[split]
            pix, tok, texts, q, te, ie = self.first_stage(records)
            top = np.argsort(-q, 1)[:, :K]
            refs, true = _references_and_truth(records, texts, top)
            self._candidates[split] = types.SimpleNamespace(
                pix=pix, top=top, first=np.take_along_axis(q, top, 1), tok=tok, texts=texts, text_embeddings=te,
                image_embeddings=ie, refs=refs, true=true,
            )
        return self._candidates[split]

    def first_stage(self, records):
        """Pixels, token ids, caption strings, QB-Norm logits [images, captions], caption and image embeddings of a pool."""
        clip = self.clip
        paths, texts, _ = records_to_retrieval_set(records)
        pix = preprocess_images(paths, clip.image_preprocessor, 256)
        tok = tokenize_texts(clip.tokenizer, texts)
        ie = clip.image_encoder.predict(pix, batch_size=256, verbose=0)
        te = clip.text_encoder.predict(tok, batch_size=256, verbose=0)
        return pix, tok, texts, self.qb_logits(ie, te), te, ie

    def qb_logits(self, image_embeddings, text_embeddings):
        """QB-Norm logits ``[images, captions]``: beta * cosine minus the querybank's log-normaliser."""
        beta = self.args.beta
        return beta * (image_embeddings @ text_embeddings.T) - querybank_log_normalizer(
            self.bank.images, text_embeddings, beta)[None]


def _references_and_truth(records, texts, top):
    """``[N, K]`` booleans: is caption ``texts[top[i, k]]`` one of record ``i``'s references / true of it (the grammar)."""
    truth = shapes_caption_checker(32)
    return (np.array([[texts[t] in set(r.captions) for t in row] for row, r in zip(top, records)]),
            np.array([[truth(r, texts[t]) for t in row] for row, r in zip(top, records)]))


def top_k_lists(setup, split):
    """Every image's QB-Norm top ``K`` with the ITM's probabilities and which candidates are references / true.

    ``top`` ``[images, K]`` caption indices, ``first`` their QB-Norm logits,
    ``p`` the ITM probabilities, ``refs`` / ``true`` booleans (one of the
    image's references / true of it by the grammar), plus ``pix``, ``tok``,
    ``texts``, ``text_embeddings`` and ``image_embeddings`` of the pool
    (``Setup.candidates``; only the ITM pass is new at each call).
    """
    c = setup.candidates(split)
    rows = np.repeat(np.arange(len(c.pix)), K)
    p = np.asarray(pair_scorer(setup.itm, c.pix, c.tok, batch_size=2048)(rows, c.top.reshape(-1))).reshape(-1, K)
    return types.SimpleNamespace(**vars(c), p=p)


def _r1(lists, column):
    """Image->text R@1 when each image keeps its candidate ``column[i]`` of the top ``K``."""
    return round(float(lists.refs[np.arange(len(column)), column].mean()), 3)


def _gated(ok):
    """Each image's first candidate (QB-Norm order) that passes ``ok`` ``[N, K]``, else its first."""
    return np.where(ok.any(1), np.argmax(ok, 1), 0)


def gate(setup, tag=""):
    """Gate and fusion R@1 of the QB-Norm top ``K`` by the ITM, and how well it tells their truth; per split."""
    for split in setup.splits:
        c = top_k_lists(setup, split)
        res = {"qb": _r1(c, np.zeros(len(c.top), int)), "perfect_truth_gate": _r1(c, _gated(c.true))}
        for t in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
            res[f"itm_gate_{t}"] = _r1(c, _gated(c.p >= t))
        res["itm_accuracy_on_top10_truth"] = round(float(np.mean((c.p > 0.5) == c.true)), 3)
        # How well each score tells true from false captions among the top 10 (pooled over images).
        res["top10_truth_auc (itm / qb logit)"] = [round(_auc(c.true.reshape(-1), c.p.reshape(-1)), 3),
                                                   round(_auc(c.true.reshape(-1), c.first.reshape(-1)), 3)]
        res["top10_true_fraction"] = round(float(c.true.mean()), 3)
        res["references_rejected_at_0.5"] = round(float((c.refs & (c.p < 0.5)).sum() / c.refs.sum()), 3)
        # Score fusion, the two forms evaluate_matcher(rerank_fusion=...) offers.
        for w in (0.25, 0.5, 1.0, 2.0, 4.0):
            for fusion in ("log_prob", "log_odds"):
                res[f"fused_{fusion}_{w:g}"] = _r1(c, np.argmax(c.first + w * transform_probability(c.p, fusion), 1))
        print(tag, split, json.dumps(res), flush=True)


def candidate_lists(setup, name="listwise_data"):
    """The QB-Norm top ``K`` of ``--images`` new images, in pools of 1,000 as in the held-out protocol.

    Arrays over the images: ``pix`` (pixels), ``tok`` (token ids ``[N, K, L]``),
    ``first`` (first-stage logits ``[N, K]``), ``refs`` (is-reference
    ``[N, K]``) and ``true`` (true of the image by the grammar ``[N, K]``);
    an image none of whose references made its top ``K`` gets its best one
    in the last slot, so every list holds a target.
    """
    args = setup.args
    cache = os.path.join(args.work_dir, f"{name}_{args.images}_lists.npz")
    if os.path.exists(cache):
        with np.load(cache) as z:
            if "true" in z:  # lists cached before `truth` existed lack it: rebuilt below
                return types.SimpleNamespace(**z)
    records = read_manifest(generate_shapes_dataset(os.path.join(args.work_dir, name),
                                                    num_images=args.images, image_size=32, seed=7000))
    pools = []
    for start in range(0, len(records), 1000):
        pool = records[start:start + 1000]
        pix, tok, texts, q, _, _ = setup.first_stage(pool)
        top = np.argsort(-q, 1)[:, :K]
        index = {t: i for i, t in enumerate(texts)}
        for i, r in enumerate(pool):
            refs = {index[c] for c in r.captions}
            if not refs.intersection(top[i]):
                top[i, -1] = max(refs, key=lambda t: q[i, t])
        refs, true = _references_and_truth(pool, texts, top)
        pools.append((pix, tok[top], np.take_along_axis(q, top, 1).astype("float32"), refs.astype("float32"),
                      true.astype("float32")))
    c = types.SimpleNamespace(**{k: np.concatenate([x[j] for x in pools])
                                 for j, k in enumerate(("pix", "tok", "first", "refs", "true"))})
    print(f"{len(c.pix)} candidate lists; a reference is first in "
          f"{c.refs[np.arange(len(c.pix)), np.argmax(c.first, 1)].mean():.3f} of them, "
          f"{c.refs.mean():.3f} of the candidates are references, {c.true.mean():.3f} are true", flush=True)
    np.savez(cache, **vars(c))
    return c


def evaluate_rerank(setup, tag, fusions=("log_odds",), weights=(0.0, 0.1, 0.25, 0.5, 1.0)):
    """R@1 of the QB-Norm top ``K`` re-ranked by the ITM, per fusion and weight (and alone), on both splits.

    The same ranking as ``evaluate_matcher(rerank_model=..., rerank_fusion=f,
    rerank_weight=w)``, from one ITM pass over each split's top ``K``.
    """
    out = {}
    for split in setup.splits:
        c = top_k_lists(setup, split)
        out[split] = {f"{f} {w:g}": _r1(c, np.argmax(c.first + w * transform_probability(c.p, f), 1))
                      for f in fusions for w in weights}
        out[split]["alone"] = _r1(c, np.argmax(c.p, 1))
        out[split]["reference_auc_top10 (itm / qb)"] = [round(_auc(c.refs.reshape(-1), v.reshape(-1)), 3)
                                                        for v in (c.p, c.first)]
    print(tag, "R@1 per fusion weight", json.dumps(out), flush=True)
    return out


def listwise(setup):
    args, itm = setup.args, setup.itm
    keras.utils.set_random_seed(0)
    lists = candidate_lists(setup)
    optimizer = keras.optimizers.Adam(args.learning_rate)

    @tf.function
    def step(pix, tok, first, labels):
        b = tf.shape(pix)[0]
        with tf.GradientTape() as tape:
            p = itm({"image": tf.repeat(pix, K, axis=0), "token_ids": tf.reshape(tok, (b * K, -1))},
                    training=True)["score"]
            p = tf.clip_by_value(tf.reshape(p, (b, K)), 1e-6, 1 - 1e-6)
            logits = first + tf.math.log(p) - tf.math.log1p(-p)
            loss = tf.reduce_mean(tf.reduce_logsumexp(logits, 1)
                                  - tf.reduce_logsumexp(tf.where(labels > 0, logits, -1e9), 1))
        grads = tape.gradient(loss, itm.trainable_weights)
        optimizer.apply_gradients([(g, w) for g, w in zip(grads, itm.trainable_weights) if g is not None])
        return loss

    def evaluate(tag):
        evaluate_rerank(setup, tag)

    evaluate("before")
    batch = 32
    for epoch in range(args.epochs):
        t0 = time.time()
        order = np.random.default_rng(epoch).permutation(len(lists.pix))
        losses = [float(step(*(a[order[s:s + batch]] for a in (lists.pix, lists.tok, lists.first, lists.refs))))
                  for s in range(0, len(order) - batch + 1, batch)]
        print(f"epoch {epoch + 1}: {time.time() - t0:.0f}s, loss {np.mean(losses):.3f}", flush=True)
        evaluate(f"after epoch {epoch + 1}")


def _finetune(setup, target, evaluate):
    """Fine-tune the ITM pointwise (binary cross-entropy) on the cached candidate lists' ``target`` labels."""
    args, itm = setup.args, setup.itm
    keras.utils.set_random_seed(0)
    lists = candidate_lists(setup)
    pix = lists.pix
    tok = lists.tok.reshape(-1, lists.tok.shape[-1])
    labels = getattr(lists, target).reshape(-1)
    rows = np.repeat(np.arange(len(pix)), K)
    pairs = None
    if args.relation_pairs:  # one pixel array: the pairs' image rows come after the lists'
        pair_pix, pair_rows, pair_tok, pair_labels = relation_pairs(setup, args.relation_pairs)
        pairs = (pair_rows + len(pix), pair_tok, pair_labels.astype("float32"))
        pix = np.concatenate([pix, pair_pix])

    def examples(rows, tok, labels, seed):
        order = np.random.default_rng(seed).permutation(len(labels))
        return tf.data.Dataset.from_tensor_slices((rows[order], tok[order], labels[order]))

    def dataset(seed):
        ds = examples(rows, tok, labels, seed)
        if pairs is None:
            ds = ds.batch(128)
        else:  # half the examples from the relation pairs, as many steps as the lists alone
            ds = tf.data.Dataset.sample_from_datasets(
                [ds.repeat(), examples(*pairs, seed=1000 + seed).repeat()], [0.5, 0.5], seed=seed,
            ).batch(128).take(len(labels) // 128)
        return ds.map(lambda r, t, y: ({"image": tf.gather(pix, r), "token_ids": t}, {"score": y}))

    itm.compile(optimizer=keras.optimizers.Adam(args.learning_rate))
    evaluate("before")
    for epoch in range(args.epochs):
        t0 = time.time()
        h = itm.fit(dataset(epoch), epochs=1, verbose=0).history
        print(f"epoch {epoch + 1}: {time.time() - t0:.0f}s, loss {h['loss'][-1]:.3f}, AUC {h['auc'][-1]:.3f}",
              flush=True)
        evaluate(f"after epoch {epoch + 1}")
    if args.save:
        itm.save(args.save)


def relation_pairs(setup, num_images, per_image=2):
    """Subject / object swaps as explicit negatives: ``(pixels, rows, token_ids, labels)`` from training images.

    For each of the first ``num_images`` training scenes, up to ``per_image``
    of its true captions with a relation (``"A above B"``, label 1) and each
    with its subject and object swapped (``"B above A"``, labelled by the
    grammar: false but for ``next to``). The top-10 lists hold few such
    pairs, and an ITM trained on them alone accepts ~95% of the swaps
    (``errors``).
    """
    rng = np.random.default_rng(0)
    records = setup.train[:num_images]
    rows, texts, labels = [], [], []
    for i, r in enumerate(records):
        possible = shapes_possible_captions(r.meta["objects"], 32)
        related = sorted(c for c in possible if _GRAMMAR.pattern.search(c))
        for caption in rng.permutation(related)[:per_image] if related else []:
            for text in (caption, _GRAMMAR.reword(caption, _GRAMMAR.pattern.search(caption), swap=True)):
                rows.append(i)
                texts.append(text)
                labels.append(text in possible)
    pix = preprocess_images([r.image for r in records], setup.clip.image_preprocessor, 256)
    print(f"relation pairs: {len(texts)} captions of {len(records)} training images, {np.mean(labels):.3f} true",
          flush=True)
    return pix, np.asarray(rows), tokenize_texts(setup.clip.tokenizer, texts), np.asarray(labels)


def strict(setup):
    """Fine-tune the ITM pointwise on the QB-Norm top ``K`` of new images, labelled 1 only for the image's own references.

    The standard ITM objective (ALBEF's: a mined negative is a negative even
    when it is true of the image) on the candidates re-ranking sees at test
    time; its optimum is P(reference | image, caption in the top K), which
    holds both the caption's truth and how often such a caption belongs to
    another image of the pool.
    """
    _finetune(setup, "refs", lambda tag: evaluate_rerank(setup, tag, ("log_odds", "log_prob")))


def truth(setup):
    """Fine-tune the ITM pointwise on the QB-Norm top ``K`` of new images, labelled by the grammar's truth.

    The verifier a truth gate needs, trained on exactly the candidates it
    gates at test time (the benchmark's ITM learns truth too, with
    ``is_match``, but on mined and edited pairs); its gate and fusions as in
    ``gate`` after each epoch. ``--relation-pairs N`` mixes in the subject /
    object swaps of ``relation_pairs``.
    """
    _finetune(setup, "true", lambda tag: gate(setup, tag))


def strict_probe(setup):
    """A strict re-ranker without the cross-encoder: an MLP on the dual encoder's frozen ``[u, v, u * v]``.

    Trained listwise on the QB-Norm top ``K`` of new images as a residual of
    the first stage (softmax over ``first-stage logit + MLP``, the image's own
    references as targets): the most a re-ranker that sees only the two
    embeddings can add.
    """
    args, clip = setup.args, setup.clip
    keras.utils.set_random_seed(0)
    lists = candidate_lists(setup)
    ie = clip.image_encoder.predict(lists.pix, batch_size=512, verbose=0)
    te = clip.text_encoder.predict(lists.tok.reshape(-1, lists.tok.shape[-1]), batch_size=1024,
                                   verbose=0).reshape(len(ie), K, -1)

    def features(u, v):  # u [N, D], v [N, K, D] -> [N, K, 3D]
        u = np.repeat(u[:, None], K, 1)
        return np.concatenate([u, v, u * v], -1).astype("float32")

    feats = keras.Input((K, 3 * ie.shape[1]))
    first_in = keras.Input((K,))
    h = keras.layers.Dense(args.probe_units, activation="gelu")(feats)
    h = keras.layers.Dense(args.probe_units, activation="gelu")(h)
    residual = keras.layers.Reshape((K,))(keras.layers.Dense(1, kernel_initializer="zeros")(h))
    model = keras.Model([feats, first_in], keras.layers.Add()([first_in, residual]))

    def listwise_loss(y, logits):
        return tf.reduce_logsumexp(logits, 1) - tf.reduce_logsumexp(tf.where(y > 0, logits, -1e9), 1)

    model.compile(keras.optimizers.Adam(args.learning_rate), listwise_loss)
    x = [features(ie, te), lists.first]
    splits = {split: setup.candidates(split) for split in setup.splits}  # no ITM here
    for epoch in range(args.probe_epochs):
        h = model.fit(x, lists.refs, batch_size=64, epochs=1, verbose=0).history
        out = {"epoch": epoch + 1, "loss": round(h["loss"][-1], 4)}
        for split, c in splits.items():
            logits = model.predict([features(c.image_embeddings, c.text_embeddings[c.top]), c.first], verbose=0)
            out[split] = {"qb": _r1(c, np.zeros(len(c.top), int))}
            for w in (0.25, 0.5, 1.0):  # first + w * residual
                out[split][f"w {w:g}"] = _r1(c, np.argmax(c.first + w * (logits - c.first), 1))
        print(json.dumps(out), flush=True)


def _auc(labels, scores):
    """Area under the ROC curve (rank statistic; ties are rare for float scores)."""
    order = np.argsort(scores)
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    positives = labels.sum()
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * (len(labels) - positives)))


def specificity(setup):
    itm, m = setup.itm, setup.args.neighbours
    truth = shapes_caption_checker(32)
    for split in setup.splits:
        c = top_k_lists(setup, split)
        candidates = np.unique(c.top)  # sorted: searchsorted maps top-K entries to rows
        nearest = np.argsort(-(c.text_embeddings[candidates] @ setup.bank.images.T), 1)[:, :m]
        bank_p = np.asarray(pair_scorer(itm, setup.bank_pixels, c.tok, batch_size=2048)(
            nearest.reshape(-1), np.repeat(candidates, m))).reshape(-1, m)
        bank_true = np.array([[truth(setup.bank_records[b], c.texts[t]) for b in row]
                              for t, row in zip(candidates, nearest)], dtype=float)
        at = np.searchsorted(candidates, c.top)
        itm_count, true_count = bank_p.sum(1)[at], bank_true.sum(1)[at]
        log_p = np.log(np.clip(c.p, 1e-6, 1.0))

        def r1(score):
            return _r1(c, np.argmax(score, 1))

        res = {
            "qb": r1(c.first),
            "grammar_truth+grammar_frequency": r1(np.where(c.true, -np.log(true_count + 1.0) + 1e-3 * c.first, -1e9)),
            "itm_truth_accuracy_top10": round(float(np.mean((c.p > 0.5) == c.true)), 3),
            "itm_truth_auc_top10": round(_auc(c.true.reshape(-1), c.p.reshape(-1)), 3),
            "references_with_itm_p_below_0.5": round(float((c.refs & (c.p < 0.5)).sum() / c.refs.sum()), 3),
            "true_images_per_caption_among_neighbours (itm / grammar)":
                [round(float(bank_p.sum(1).mean()), 1), round(float(bank_true.sum(1).mean()), 1)],
        }
        for eps in (0.5, 1.0, 2.0):
            posterior = log_p - np.log(itm_count + eps)
            res[f"itm_qb_norm eps {eps}"] = r1(posterior)
            for w in (0.1, 0.3, 1.0):
                res[f"{w} * qb + itm_qb_norm eps {eps}"] = r1(w * c.first + posterior)
        print(split, json.dumps(res), flush=True)


def ambiguity(setup, draws=16):
    """How much of the top-10 truth the pixels decide, and what a truth gate can then reach.

    The grammar's relations and regions are thresholds on the shapes' centres
    (``left of`` when ``|dx| >= |dy|`` and ``|dx| > 4`` px, regions by thirds
    of the image), so a caption can turn false when a centre moves by a
    fraction of a pixel. Each candidate is checked against ``draws`` scenes
    with every centre moved uniformly by up to ``d`` px: true in all of them
    (clear), false in all (clearly false) or mixed (ambiguous at ``d``). The
    bounds: a gate that knows every clear case and lets the ambiguous ones
    through, or rejects them, keeping the QB-Norm order; and the share of the
    ITM's truth errors (``p > 0.5`` against the grammar) that are ambiguous.
    """
    rng = np.random.default_rng(0)
    for split in setup.splits:
        c = top_k_lists(setup, split)
        errors = (c.p > 0.5) != c.true
        res = {"qb": _r1(c, np.zeros(len(c.top), int)), "perfect_truth_gate": _r1(c, _gated(c.true)),
               "itm_truth_errors_top10": round(float(errors.mean()), 3)}
        for d in (0.25, 0.5, 1.0):
            votes = np.zeros(c.top.shape)
            for _ in range(draws):
                for i, r in enumerate(setup.splits[split]):
                    moved = [dict(o, x=o["x"] + rng.uniform(-d, d), y=o["y"] + rng.uniform(-d, d))
                             for o in r.meta["objects"]]
                    possible = shapes_possible_captions(moved, 32)
                    votes[i] += [c.texts[t] in possible for t in c.top[i]]
            clear_false = votes == 0
            ambiguous = (votes > 0) & (votes < draws)
            res[f"d {d}"] = {
                "ambiguous_fraction": round(float(ambiguous.mean()), 3),
                "references_ambiguous": round(float((ambiguous & c.refs).sum() / c.refs.sum()), 3),
                "gate_clear_truth_ambiguous_pass": _r1(c, _gated(~clear_false)),
                "gate_clear_truth_ambiguous_reject": _r1(c, _gated(votes == draws)),
                "itm_errors_ambiguous": round(float((errors & ambiguous).sum() / max(errors.sum(), 1)), 3),
                "itm_gate_0.3_ambiguous_pass": _r1(c, _gated((c.p >= 0.3) | ambiguous)),
            }
        print(split, json.dumps(res), flush=True)


#: ``"A rel B"`` in a caption, and re-wording it: the library's relation negatives' grammar.
_GRAMMAR = RelationGrammar.coerce(SHAPES_RELATION_GRAMMAR)


def relation_kind(caption, possible):
    """What a caption's relation gets right, judged by the grammar (``possible``: every true caption of the scene).

    ``"no relation"``; ``"relation true"``; false captions whose relation
    names the scene's objects (``"A rel B"``, the first relation of the
    caption): ``"subject and object swapped"`` when ``"B rel A"`` is true
    ("a circle above a square" for a circle below it), ``"wrong relation"``
    when another relation word between the same two is true (``left of``
    for ``above``, or ``next to``); else ``"objects or sizes wrong"``.
    """
    m = _GRAMMAR.pattern.search(caption)
    if m is None:
        return "no relation"
    if caption in possible:
        return "relation true"
    if _GRAMMAR.reword(caption, m, swap=True) in possible:
        return "subject and object swapped"
    if any(_GRAMMAR.reword(caption, m, relation=r) in possible
           for r in _GRAMMAR.relations if r != m.group("relation")):
        return "wrong relation"
    return "objects or sizes wrong"


def errors(setup):
    """The ITM's truth errors in the QB-Norm top ``K`` by what each caption's relation gets right (``relation_kind``).

    Per split and kind: how many candidates, and the share the ITM judges
    wrongly (``p > 0.5`` against the grammar's truth).
    """
    for split in setup.splits:
        c = top_k_lists(setup, split)
        wrong = (c.p > 0.5) != c.true
        counts = {}
        for i, r in enumerate(setup.splits[split]):
            possible = shapes_possible_captions(r.meta["objects"], 32)
            for k, t in enumerate(c.top[i]):
                kind = relation_kind(c.texts[t], possible)
                n, e = counts.get(kind, (0, 0))
                counts[kind] = (n + 1, e + int(wrong[i, k]))
        res = {kind: {"candidates": n, "itm_wrong": round(e / n, 3)} for kind, (n, e) in sorted(counts.items())}
        print(split, json.dumps(res), flush=True)


def probe(setup):
    args, clip = setup.args, setup.clip
    keras.utils.set_random_seed(0)
    truth = shapes_caption_checker(32)
    records = setup.train[: args.probe_images]
    pix = preprocess_images([r.image for r in records], clip.image_preprocessor, 256)
    ie = clip.image_encoder.predict(pix, batch_size=256, verbose=0)
    captions = [r.captions[0] for r in records]
    te = clip.text_encoder.predict(tokenize_texts(clip.tokenizer, captions), batch_size=256, verbose=0)
    rows, cols, labels = [], [], []
    for start in range(0, len(records), 3000):  # pools of 3,000 captions, as the held-out pool's ~2,700
        q = setup.qb_logits(ie[start:start + 3000], te[start:start + 3000])
        for a, row in enumerate(np.argsort(-q, 1)[:, :12]):
            for b in sorted(set(row.tolist()) | {a}):
                rows.append(start + a)
                cols.append(start + b)
                labels.append(b == a or truth(records[start + a], captions[start + b]))

    def features(u, v):
        return np.concatenate([u, v, u * v], 1).astype("float32")

    x, y = features(ie[rows], te[cols]), np.array(labels, "float32")
    inputs = keras.Input((x.shape[1],))
    hidden = keras.layers.Dense(512, activation="gelu")(keras.layers.Dense(512, activation="gelu")(inputs))
    mlp = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden))
    mlp.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy")
    t0 = time.time()
    mlp.fit(x, y, batch_size=512, epochs=args.probe_epochs, verbose=0)
    print(f"probe: {len(y)} pairs ({y.mean():.2f} true) from {len(records)} training images, "
          f"{args.probe_epochs} epochs in {time.time() - t0:.0f}s", flush=True)
    for split in setup.splits:
        c = top_k_lists(setup, split)
        p = mlp.predict(features(np.repeat(c.image_embeddings, K, 0), c.text_embeddings[c.top.reshape(-1)]),
                        batch_size=4096, verbose=0).reshape(-1, K)
        log_p = transform_probability(p, "log_prob")
        res = {
            "qb": _r1(c, np.zeros(len(c.top), int)),
            "perfect_truth_gate": _r1(c, _gated(c.true)),
            "top10_truth_auc (probe / itm / qb logit)": [round(_auc(c.true.reshape(-1), v.reshape(-1)), 3)
                                                         for v in (p, c.p, c.first)],
        }
        for t in (0.3, 0.5, 0.7):
            res[f"probe_gate_{t}"] = _r1(c, _gated(p >= t))
        for w in (0.25, 0.5, 1.0, 2.0):
            res[f"fused_probe_log_prob_{w:g}"] = _r1(c, np.argmax(c.first + w * log_p, 1))
        print(split, json.dumps(res), flush=True)


def main(argv=None):
    args = parse_args(argv)
    setup = Setup(args)
    analyses = {"gate": gate, "listwise": listwise, "strict": strict, "truth": truth, "strict_probe": strict_probe,
                "specificity": specificity, "probe": probe, "ambiguity": ambiguity,
                "errors": errors}
    analyses[args.analysis](setup)


if __name__ == "__main__":
    main()
