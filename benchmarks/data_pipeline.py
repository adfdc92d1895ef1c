"""Images per second of mmzoo's tf.data pipeline vs a sequential Python loop.

Generates N shapes images (PNG), then reads, decodes, resizes and batches the
same files two ways, in one run:

* pipeline: ``mmzoo.data.make_dataset`` (parallel read + decode with
  ``AUTOTUNE``, ``ImagePreprocessor.decode_one``, batch, prefetch);
* the same pipeline with a plain decode + resize in place of
  ``ImagePreprocessor.decode_one`` (a diagnostic: the cost of its in-graph
  header checks);
* sequential: a plain Python loop, one file at a time (``open().read()``,
  ``tf.io.decode_image``, ``tf.image.resize`` with the same antialiasing,
  ``np.stack`` per batch).

Prints both rates and their RATIO (pipeline / sequential; goal >= 1.6x on 2
cores). Each is timed over full passes after one warm-up pass (files in the
OS cache for both); the median of ``--repeats`` passes is reported.

    python -m benchmarks.data_pipeline --quick
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.run import contract_report  # noqa: E402
from mmzoo.data import make_dataset, read_manifest  # noqa: E402
from mmzoo.datasets.shapes import generate_shapes_dataset  # noqa: E402
from mmzoo.preprocessing import ImagePreprocessor  # noqa: E402


class _PlainDecoder:
    """``decode_one`` with only decode + resize (no header checks): a diagnostic."""

    def __init__(self, image_size):
        self.image_size = image_size

    def decode_one(self, data):
        image = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
        image = tf.image.resize(tf.cast(image, tf.float32), (self.image_size, self.image_size), antialias=True)
        return tf.ensure_shape(image, [self.image_size, self.image_size, 3])


class _ImagesOnly:
    """The data-facing surface of a model, yielding just the image batch."""

    task = ""
    label_names = None

    def __init__(self, image_size, plain=False):
        if plain:
            self.image_preprocessor = _PlainDecoder(image_size)
        else:
            self.image_preprocessor = ImagePreprocessor(image_size=(image_size, image_size))

    def training_example(self, batch):
        return batch["image"]


def pipeline_pass(dataset) -> int:
    count = 0
    for images in dataset:
        count += int(images.shape[0])
    return count


def sequential_pass(paths, image_size, batch_size) -> int:
    count, batch = 0, []
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        image = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
        image = tf.image.resize(tf.cast(image, tf.float32), (image_size, image_size), antialias=True)
        batch.append(image.numpy())
        if len(batch) == batch_size:
            count += len(np.stack(batch))
            batch = []
    if batch:
        count += len(np.stack(batch))
    return count


def timed(fn, repeats):
    fn()  # warm-up: traces the pipeline, warms the OS file cache
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        n = fn()
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and repeats (about a minute)")
    parser.add_argument("--num-images", type=int, default=None, help="default 2000 (300 with --quick)")
    parser.add_argument("--source-size", type=int, default=128, help="side of the generated PNGs")
    parser.add_argument("--image-size", type=int, default=64, help="side after resizing")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=None, help="timed passes (default 3, 2 with --quick)")
    parser.add_argument("--data-dir", default=None, help="where to write the images (default: a temp dir)")
    args = parser.parse_args(argv)
    num_images = args.num_images or (300 if args.quick else 2000)
    repeats = args.repeats or (2 if args.quick else 3)

    data_dir = args.data_dir or tempfile.mkdtemp(prefix="mmzoo_bench_")
    manifest = generate_shapes_dataset(data_dir, num_images=num_images, image_size=args.source_size, seed=0)
    records = read_manifest(manifest)
    paths = [r.image for r in records]

    model = _ImagesOnly(args.image_size)
    dataset = make_dataset(records, model, batch_size=args.batch_size, training=False, captions=False)
    parallel = timed(lambda: pipeline_pass(dataset), repeats)
    sequential = timed(lambda: sequential_pass(paths, args.image_size, args.batch_size), repeats)
    plain_model = _ImagesOnly(args.image_size, plain=True)
    plain_dataset = make_dataset(records, plain_model, batch_size=args.batch_size, training=False, captions=False)
    plain = timed(lambda: pipeline_pass(plain_dataset), repeats)

    print(f"images: {num_images} PNG {args.source_size}x{args.source_size} -> {args.image_size}x{args.image_size}, "
          f"batch {args.batch_size}, cpus {os.cpu_count()}, median of {repeats} passes")
    print(f"pipeline   (tf.data, AUTOTUNE): {parallel:9.1f} images/s")
    print(f"sequential (python loop)      : {sequential:9.1f} images/s")
    print(f"pipeline, decode+resize only  : {plain:9.1f} images/s (no ImagePreprocessor header checks)")
    print(f"RATIO pipeline/sequential: {parallel / sequential:.2f}x (goal >= 1.6x)")
    print(f"RATIO pipeline(decode+resize only)/sequential: {plain / sequential:.2f}x")
    ratio = parallel / sequential
    rows = [
        {"figure": "tf.data pipeline vs sequential Python loop, images/s", "goal": ">= 1.6x",
         "value": f"{ratio:.2f}x ({parallel:.0f} vs {sequential:.0f} img/s)", "met": bool(ratio >= 1.6)},
        {"figure": "same, plain decode + resize instead of `ImagePreprocessor.decode_one`", "goal": None,
         "value": f"{plain / sequential:.2f}x", "met": None},
    ]
    print(json.dumps(contract_report("data_pipeline", rows, argv)), flush=True)
    return ratio


if __name__ == "__main__":
    main()
