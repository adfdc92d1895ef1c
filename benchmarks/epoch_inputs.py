"""What a run's training input costs before and between the steps: one pipeline for every epoch vs one per epoch.

``mmzoo train`` feeds ``mmzoo.training.inputs.epoch_datasets``: the epochs'
orders (a permutation per ``(seed, epoch)``) in one ``make_dataset(...,
epoch_orders=...)`` pipeline, whose decoding and tokenization are traced
once. The reference is what it did before: one ``make_dataset`` per epoch,
over the examples in that epoch's order, concatenated (each traces its own
maps). Both build the same batches (``tests/data/test_pipeline.py``). On a
shapes manifest of PNG files (``--images``, 32x32) with the images decoded
once in memory, as ``mmzoo train`` does when they fit, each round builds the
``--epochs`` epochs' input both ways (order alternating per round) and reads
every batch; the figure is the median over rounds of the ratio of the two
(build + read), with each way's build time beside it.

    python -m benchmarks.epoch_inputs --quick
    python -m benchmarks.epoch_inputs --epochs 20 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from benchmarks.run import contract_report  # noqa: E402
from mmzoo.data import decode_images, make_dataset, read_manifest  # noqa: E402
from mmzoo.datasets.shapes import generate_shapes_splits  # noqa: E402
from mmzoo.training import build_for_data  # noqa: E402
from mmzoo.training.inputs import epoch_datasets, training_examples  # noqa: E402

ENTRY = "gated_classifier"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="5 epochs of 300 images, 2 rounds")
    p.add_argument("--entry", default=ENTRY, help=f"zoo entry, tiny preset (default {ENTRY})")
    p.add_argument("--epochs", type=int, default=None, help="epochs per input (default 20, the demo's; 5 with --quick)")
    p.add_argument("--images", type=int, default=None, help="training images (default 2000; 300 with --quick)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=None, help="paired rounds (default 5; 2 with --quick)")
    args = p.parse_args(argv)
    args.epochs = args.epochs or (5 if args.quick else 20)
    args.images = args.images or (300 if args.quick else 2000)
    args.rounds = args.rounds or (2 if args.quick else 5)
    return args


def per_epoch_datasets(examples, model, batch_size, seed, epochs, decoded_images):
    """The reference: one ``make_dataset`` per epoch over the examples in its order, concatenated."""
    dataset = None
    for epoch in range(epochs):
        order = np.random.default_rng([int(seed), epoch]).permutation(len(examples))
        ds = make_dataset([examples[i] for i in order], model, batch_size=batch_size, training=True, shuffle=False,
                          decoded_images=decoded_images)
        dataset = ds if dataset is None else dataset.concatenate(ds)
    return dataset


def _timed(build):
    start = time.perf_counter()
    ds = build()
    built = time.perf_counter() - start
    batches = sum(1 for _ in ds)
    return built, time.perf_counter() - start, batches


def measure(args, work):
    splits = generate_shapes_splits(work, num_train=args.images, num_val=0, num_test=0, image_size=32, seed=0)
    records = read_manifest(splits["train"])
    model = build_for_data(args.entry, records, preset="tiny", overrides={"image_size": [32, 32]})
    examples = training_examples(records, model)
    decoded = decode_images(examples, model)
    ways = {
        "one": lambda: epoch_datasets(examples, model, args.batch_size, 0, 0, args.epochs, decoded),
        "per_epoch": lambda: per_epoch_datasets(examples, model, args.batch_size, 0, args.epochs, decoded),
    }
    builds, totals, ratios = {w: [] for w in ways}, {w: [] for w in ways}, []
    for r in range(args.rounds):
        round_totals = {}
        for way in (("per_epoch", "one") if r % 2 == 0 else ("one", "per_epoch")):
            built, total, batches = _timed(ways[way])
            builds[way].append(built)
            totals[way].append(total)
            round_totals[way] = total
            assert batches == args.epochs * -(-len(examples) // args.batch_size), (way, batches)
        ratios.append(round_totals["one"] / round_totals["per_epoch"])
    return {"ratio": statistics.median(ratios),
            **{f"{w}_build_s": statistics.median(v) for w, v in builds.items()},
            **{f"{w}_total_s": statistics.median(v) for w, v in totals.items()}}


def main(argv=None):
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        res = measure(args, work)
    print(f"{args.epochs} epochs of {args.images} images: one pipeline {res['one_total_s']:.1f} s "
          f"(build {res['one_build_s']:.2f} s), a pipeline per epoch {res['per_epoch_total_s']:.1f} s "
          f"(build {res['per_epoch_build_s']:.2f} s)", file=sys.stderr, flush=True)
    what = f"`{args.entry}` (tiny), {args.epochs} epochs of {args.images} 32x32 images decoded in memory"
    rows = [
        {"figure": f"{what}: building and reading the training input, one pipeline / a pipeline per epoch "
                   f"(median of {args.rounds} paired rounds)",
         "goal": None, "value": f"{res['ratio']:.2f}x ({res['one_total_s']:.1f} vs {res['per_epoch_total_s']:.1f} s)",
         "met": None},
        {"figure": f"{what}: building it (tracing), one pipeline vs a pipeline per epoch", "goal": None,
         "value": f"{res['one_build_s']:.2f} vs {res['per_epoch_build_s']:.2f} s", "met": None},
    ]
    report = contract_report("epoch_inputs", rows, argv)
    print(json.dumps(report), flush=True)
    return report, res


if __name__ == "__main__":
    main()
