"""Image-text retrieval on the built-in shapes captions: dual encoder + ITM re-ranking.

Trains ``dual_encoder`` (CLIP-style contrastive) and ``itm_matcher`` (ITM
cross-encoder on hard negatives mined by the trained dual encoder) on
procedurally generated shapes images with templated captions, then on
held-out images prints Recall@1/5/10 in both directions (dual encoder alone,
then with the ITM re-ranking the dual encoder's top-k), and the embedding
throughput of the exported ``embed_text`` signature as a ratio to the Keras
model's ``predict`` (tokenization included on both sides).

Shapes captions repeat across images ("a red circle and a blue square"), so
captions are de-duplicated by exact string: a retrieval counts as correct when
the retrieved caption text equals one of the image's reference captions (a
text retrieves correctly when it ranks any image that has it as a reference).

    python benchmarks/retrieval.py            # 4,000 training / 1,000 held-out images
    python benchmarks/retrieval.py --quick    # a couple of minutes on a laptop CPU
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import mmzoo  # noqa: E402
from mmzoo.data import generate_shapes_dataset, make_dataset, read_manifest  # noqa: E402
from mmzoo.heads.matching import make_itm_dataset  # noqa: E402
from mmzoo.metrics.retrieval import evaluate_matcher  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small data and budget (smoke run)")
    p.add_argument("--train-images", type=int, default=4000)
    p.add_argument("--test-images", type=int, default=1000)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--preset", default="default")
    p.add_argument("--epochs", type=int, default=12, help="dual encoder epochs")
    p.add_argument("--itm-epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--rerank-k", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None, help="where to write the shapes data (default: a temp dir)")
    args = p.parse_args(argv)
    if args.quick:
        args.train_images, args.test_images = 600, 200
        args.image_size, args.preset = 32, "tiny"
        args.epochs, args.itm_epochs = 6, 2
        args.batch_size = 64
    return args


def _fmt(metrics, prefix=""):
    keys = [f"{prefix}image_to_text_recall@{k}" for k in (1, 5, 10)] + [
        f"{prefix}text_to_image_recall@{k}" for k in (1, 5, 10)
    ]
    i2t = " ".join(f"{metrics[k]:.3f}" for k in keys[:3])
    t2i = " ".join(f"{metrics[k]:.3f}" for k in keys[3:])
    return (
        f"image->text R@1/5/10 {i2t} (median rank {metrics[prefix + 'image_to_text_median_rank']:.0f}) | "
        f"text->image R@1/5/10 {t2i} (median rank {metrics[prefix + 'text_to_image_median_rank']:.0f})"
    )


def embed_text_throughput(model, texts, out_dir, batch_size=256, repeats=3):
    """Texts per second: exported ``embed_text`` signature vs the Keras ``predict`` path."""
    version_dir = mmzoo.export_saved_model(model, os.path.join(out_dir, "dual_encoder"), version=1)
    loaded = tf.saved_model.load(version_dir)
    signature = loaded.signatures["embed_text"]
    batches = [tf.constant(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]

    def run_exported():
        return [signature(text=b)["embedding"] for b in batches]

    def run_keras():
        return [model.text_encoder.predict(model.tokenizer(b), verbose=0) for b in batches]

    exported, keras_out = run_exported(), run_keras()  # warm up / trace
    np.testing.assert_allclose(np.asarray(exported[0]), np.asarray(keras_out[0]), atol=1e-4)

    def best_time(fn):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    t_exported, t_keras = best_time(run_exported), best_time(run_keras)
    return len(texts) / t_exported, len(texts) / t_keras


def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="mmzoo_retrieval_")
    t0 = time.perf_counter()
    train = read_manifest(
        generate_shapes_dataset(os.path.join(data_dir, "train"), num_images=args.train_images,
                                image_size=args.image_size, seed=args.seed)
    )
    test = read_manifest(
        generate_shapes_dataset(os.path.join(data_dir, "test"), num_images=args.test_images,
                                image_size=args.image_size, seed=args.seed + 1000)
    )
    size = (args.image_size, args.image_size)
    print(f"shapes data: {len(train)} training images, {len(test)} held-out images "
          f"({args.image_size}px, {len(test[0].captions)} captions each) in {time.perf_counter() - t0:.0f}s")
    print("retrieval is correct when the retrieved caption TEXT equals one of the image's reference "
          "captions (captions de-duplicated by string; shapes captions repeat across images)")

    # 1. Dual encoder.
    clip = mmzoo.build("dual_encoder", preset=args.preset, image_size=size)
    steps = int(np.ceil(len(train) * len(train[0].captions) / args.batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(2e-3, decay_steps=max(1, steps * args.epochs), alpha=0.05)
    clip.compile(optimizer=keras.optimizers.Adam(schedule))
    ds = make_dataset(train, clip, batch_size=args.batch_size, training=True, seed=args.seed, cache=True,
                      drop_remainder=True)
    t0 = time.perf_counter()
    history = clip.fit(ds, epochs=args.epochs, verbose=0).history
    print(f"dual_encoder ({args.preset}, {clip.count_params():,} params): {args.epochs} epochs in "
          f"{time.perf_counter() - t0:.0f}s, loss {history['loss'][0]:.3f} -> {history['loss'][-1]:.3f}, "
          f"logit scale {history['logit_scale'][-1]:.1f}")

    # 2. ITM cross-encoder on hard negatives mined by the dual encoder.
    itm = mmzoo.build("itm_matcher", preset=args.preset, image_size=size)
    itm.compile()
    t0 = time.perf_counter()
    for epoch in range(args.itm_epochs):  # fresh hard negatives each epoch
        itm_ds = make_itm_dataset(train, itm, dual_encoder=clip, batch_size=args.batch_size,
                                  sample_from_top=8, seed=args.seed + epoch)
        itm_history = itm.fit(itm_ds, epochs=1, verbose=0).history
    print(f"itm_matcher ({args.preset}, {itm.count_params():,} params): {args.itm_epochs} epochs in "
          f"{time.perf_counter() - t0:.0f}s, last loss {itm_history['loss'][-1]:.3f}, "
          f"accuracy {itm_history['accuracy'][-1]:.3f}")

    # 3. Held-out retrieval.
    metrics = evaluate_matcher(clip, test, batch_size=256, rerank_model=itm, rerank_k=args.rerank_k)
    print(f"held-out: {metrics['num_images']:.0f} images, {metrics['num_texts']:.0f} distinct captions")
    print(f"dual encoder            : {_fmt(metrics)}")
    print(f"+ ITM re-rank of top-{args.rerank_k:<3}: {_fmt(metrics, 'reranked_')}")
    print(f"QUALITY image_to_text_R@1 = {metrics['image_to_text_recall@1']:.3f} (goal >= 0.8); "
          f"with ITM re-ranking = {metrics['reranked_image_to_text_recall@1']:.3f} "
          f"(change {metrics['reranked_image_to_text_recall@1'] - metrics['image_to_text_recall@1']:+.3f})")

    # 4. Throughput of the exported embed_text vs Keras predict.
    texts = [c for r in test for c in r.captions][: 2048 if not args.quick else 512]
    with tempfile.TemporaryDirectory() as export_dir:
        exported, keras_rate = embed_text_throughput(clip, texts, export_dir)
    print(f"RATIO exported embed_text / keras predict throughput = {exported / keras_rate:.2f} "
          f"({exported:,.0f} vs {keras_rate:,.0f} texts/s, batches of 256, tokenization included)")
    return metrics


if __name__ == "__main__":
    main()
