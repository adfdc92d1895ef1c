"""Captioning benchmark: decoding cost ratios and caption quality on the shapes data.

Prints, from one run:

1. ``cached_speedup``: uncached / cached decoding time of the Transformer
   captioner for 32-token captions at batch 16 (goal: at least 3x). The KV
   cache feeds one token per step; the uncached reference re-runs the decoder
   over the whole prefix. ``[END]``'s output bias is pushed down in this copy
   so every caption runs the full 32 steps.
2. ``beam4_over_greedy``: beam search (width 4) / greedy time, cached decoder
   (goal: at most 3x).
3. BLEU-1..4, CIDEr-D and exact match of ``lstm_captioner`` and
   ``transformer_captioner`` trained briefly on built-in shapes images and
   scored on held-out ones (goal: transformer BLEU-4 at least 0.6).

Every timing is the median of several calls of the compiled (``tf.function``)
``generate`` after a warm-up call; ratios compare runs of the same process.

    python -m benchmarks.captioning --quick   # a minute or two on a laptop CPU
    python -m benchmarks.captioning           # the figures in benchmarks/README.md
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import mmzoo  # noqa: E402
from benchmarks.run import contract_report  # noqa: E402
from mmzoo.data import make_dataset, read_manifest  # noqa: E402
from mmzoo.datasets.shapes import generate_shapes_splits, shapes_tokenizer  # noqa: E402
from mmzoo.evaluation.captioning import evaluate_captioner  # noqa: E402


def _interleaved_medians(fns: dict, repeats: int) -> dict:
    """Median seconds of each callable, timed round-robin after one warm-up call each.

    Round-robin, so a burst of load from other processes on a shared machine
    slows every variant alike instead of one block of repeats.
    """
    for fn in fns.values():
        fn()  # warm-up: tracing
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(values)) for name, values in times.items()}


def decoding_ratios(quick: bool) -> dict:
    keras.utils.set_random_seed(0)
    size = 32 if quick else 64
    model = mmzoo.build(
        "transformer_captioner", preset="tiny" if quick else "default", image_size=size,
        tokenizer=shapes_tokenizer(32, add_start_end=True),
    )
    head = model.get_layer("logits")
    bias = head.bias.numpy()
    bias[model.tokenizer.end_id] = -1e4  # never stop early: every caption takes 32 steps
    head.bias.assign(bias)
    images = tf.constant(np.random.default_rng(0).uniform(0, 255, (16, size, size, 3)).astype("float32"))
    repeats = 5 if quick else 9

    def run(**kwargs):
        return lambda: model.generate(images, max_length=32, **kwargs)["token_ids"].numpy()

    lengths = (run()() != 0).sum(-1)
    medians = _interleaved_medians(
        {"cached": run(), "uncached": run(use_cache=False), "beam": run(method="beam", beam_width=4)}, repeats
    )
    cached, uncached, beam = medians["cached"], medians["uncached"], medians["beam"]
    return {
        "decode_tokens": int(lengths.min()),
        "batch_size": 16,
        "cached_greedy_s": round(cached, 4),
        "uncached_greedy_s": round(uncached, 4),
        "beam4_s": round(beam, 4),
        "cached_speedup": round(uncached / cached, 2),
        "beam4_over_greedy": round(beam / cached, 2),
    }


class _BleuCurve(keras.callbacks.Callback):
    """Greedy held-out BLEU-4 / exact match every ``every`` epochs (the learning curve)."""

    def __init__(self, name, test, every):
        super().__init__()
        self.name, self.test, self.every, self.points = name, test, every, []

    def on_epoch_end(self, epoch, logs=None):
        if not self.every or (epoch + 1) % self.every:
            return
        s = evaluate_captioner(self.model, self.test, batch_size=64)
        self.points.append((epoch + 1, round(s["bleu_4"], 4), round(s["exact_match"], 4)))
        print(f"  {self.name} epoch {epoch + 1}: loss {logs['loss']:.3f}, held-out BLEU-4 {s['bleu_4']:.3f}, "
              f"exact match {s['exact_match']:.3f}", flush=True)


def caption_quality(args, data_dir: str) -> dict:
    """Train each captioner on shapes images and score greedy and beam-4 captions on held-out ones."""
    splits = generate_shapes_splits(
        data_dir, num_train=args.train_images, num_val=0, num_test=args.test_images, seed=0,
        image_size=args.image_size,
    )
    train, test = read_manifest(splits["train"]), read_manifest(splits["test"])
    steps = len(train) * len(train[0].captions) // args.batch_size
    results = {}
    for name in args.models:
        keras.utils.set_random_seed(0)
        overrides = {"image_size": args.image_size}
        if name == "transformer_captioner" and args.preset in ("tiny", "small", "default"):
            overrides["dropout"] = 0.0 if args.quick else 0.1
        length = mmzoo.get_entry(name).preset_kwargs(args.preset).get("sequence_length", 20)
        model = mmzoo.build(name, preset=args.preset, tokenizer=shapes_tokenizer(length, add_start_end=True), **overrides)
        schedule = keras.optimizers.schedules.CosineDecay(
            args.learning_rate, decay_steps=max(1, steps * args.epochs), alpha=0.05
        )
        model.compile(optimizer=keras.optimizers.Adam(schedule))
        ds = make_dataset(train, model, batch_size=args.batch_size, shuffle=True, seed=0, cache=True)
        curve = _BleuCurve(name, test, args.eval_every)
        print(f"{name} ({args.preset}, {model.count_params():,} params): {len(train)} training images "
              f"x {len(train[0].captions)} captions at {args.image_size}px, batch {args.batch_size}, "
              f"{args.epochs} epochs, Adam {args.learning_rate:g} cosine", flush=True)
        start = time.perf_counter()
        history = model.fit(ds, epochs=args.epochs, verbose=0, callbacks=[curve])
        train_s = time.perf_counter() - start
        scores = {k: round(v, 4) for k, v in evaluate_captioner(model, test, batch_size=64).items()}
        beam = evaluate_captioner(model, test, batch_size=64, method="beam", beam_width=4)
        scores["beam4_bleu_4"] = round(beam["bleu_4"], 4)
        scores["beam4_exact_match"] = round(beam["exact_match"], 4)
        scores.update(train_loss=round(float(history.history["loss"][-1]), 4), train_s=round(train_s, 1),
                      preset=args.preset, epochs=args.epochs, train_images=len(train), test_images=len(test),
                      curve=curve.points)
        print(f"{name}: {args.epochs} epochs in {train_s:.0f}s, loss "
              f"{history.history['loss'][0]:.3f} -> {history.history['loss'][-1]:.3f}", flush=True)
        results[name] = scores
    return results


def json_report(report, argv=None):
    """The benchmark contract's last line: ``{"benchmark", "command", "rows"}``."""
    rows = []
    ratios = report.get("decoding")
    if ratios:
        rows += [
            {"figure": f"cached vs uncached greedy decoding, {ratios['decode_tokens']} tokens at batch 16",
             "goal": ">= 3x", "value": f"{ratios['cached_speedup']:.2f}x",
             "met": bool(ratios["cached_speedup"] >= 3)},
            {"figure": "beam 4 vs greedy decoding cost", "goal": "<= 3x",
             "value": f"{ratios['beam4_over_greedy']:.2f}x", "met": bool(ratios["beam4_over_greedy"] <= 3)},
        ]
    for name, s in report.get("quality", {}).items():
        where = f"{s['test_images']} held-out shapes images"
        goal = ">= 0.6" if name == "transformer_captioner" else None
        rows.append({"figure": f"{name} BLEU-4, greedy ({where})", "goal": goal, "value": f"{s['bleu_4']:.3f}",
                     "met": bool(s["bleu_4"] >= 0.6) if goal else None})
        rows.append({"figure": f"{name} BLEU-4, beam 4", "goal": None, "value": f"{s['beam4_bleu_4']:.3f}",
                     "met": None})
        rows.append({"figure": f"{name} exact match, greedy / beam 4", "goal": None,
                     "value": f"{s['exact_match']:.3f} / {s['beam4_exact_match']:.3f}", "met": None})
        rows.append({"figure": f"{name} CIDEr-D, greedy", "goal": None, "value": f"{s['cider_d']:.3f}",
                     "met": None})
    return contract_report("captioning", rows, argv)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny models and data (a minute or two on CPU)")
    parser.add_argument("--skip-quality", action="store_true", help="decoding ratios only")
    parser.add_argument("--skip-decoding", action="store_true", help="quality figures only")
    parser.add_argument("--models", default="lstm_captioner,transformer_captioner", help="comma-separated")
    parser.add_argument("--preset", default="shapes", help="captioner preset for the quality figures")
    parser.add_argument("--train-images", type=int, default=4000)
    parser.add_argument("--test-images", type=int, default=200)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="Adam, cosine decay to 5%%")
    parser.add_argument("--eval-every", type=int, default=0, help="held-out BLEU-4 every N epochs")
    args = parser.parse_args(argv)
    if args.quick:  # new defaults, so flags given with --quick still win (`--quick --epochs 2`)
        parser.set_defaults(train_images=300, test_images=60, epochs=6, preset="tiny", image_size=32, batch_size=32,
                            learning_rate=1e-3)
        args = parser.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    return args


def main(argv=None):
    args = parse_args(argv)
    report = {"quick": args.quick}
    if not args.skip_decoding:
        ratios = decoding_ratios(args.quick)
        print(f"cached vs uncached decoding, {ratios['decode_tokens']} tokens at batch 16: "
              f"{ratios['cached_speedup']:.2f}x faster with the KV cache (goal >= 3x)")
        print(f"beam 4 vs greedy cost: {ratios['beam4_over_greedy']:.2f}x (goal <= 3x)")
        report["decoding"] = ratios
    if not args.skip_quality:
        with tempfile.TemporaryDirectory() as tmp:
            quality = caption_quality(args, tmp)
        for name, s in quality.items():
            print(f"{name}: BLEU-4 {s['bleu_4']:.3f} (beam 4: {s['beam4_bleu_4']:.3f}), CIDEr-D {s['cider_d']:.3f}, "
                  f"exact match {s['exact_match']:.3f} on {s['test_images']} held-out images")
        report["quality"] = quality
    print(json.dumps(json_report(report, argv)))
    return report


if __name__ == "__main__":
    main()
