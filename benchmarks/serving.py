"""Raw bytes -> predictions: the exported signature versus the plain Python path.

Export path: ``tf.saved_model.load(export)["serving_default"](image_bytes, text)``
(decode, resize, tokenize and the model in one graph).
Python path, what a user would write without the export: PIL decode + resize,
Python tokenization with the tokenizer's vocabulary, ``model.predict``.

Prints, from one run: the speed ratio (Python time / export time) at batch 1
and batch 32 (goal: >= 2x at batch 32), the ratio against a direct
``model(x)`` call instead of ``model.predict``, and p50/p99 latency at batch 1.

tf.Example vs raw tensors: the same images and texts as serialized
``tf.train.Example`` through the ``tf_example`` signature (parsed in the graph)
against ``serving_default`` on the raw string tensors, same batch: the ratio
of the signature calls (the server's side of a request), the client's cost of
serializing the Examples (``mmzoo.serving.common.encode_example``, standard
library) and the request's bytes (serialized Examples / raw strings). The two
signatures are timed alternately (at least 50 pairs) so that load changes on
a shared machine fall on both, and the ratio is the median of the per-pair
ratios (with its quartiles).

    python -m benchmarks.serving --quick
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

import mmzoo  # noqa: E402
from benchmarks.run import contract_report  # noqa: E402
from mmzoo.datasets.shapes import shapes_model_kwargs  # noqa: E402
from mmzoo.export import export_saved_model  # noqa: E402
from mmzoo.serving.common import encode_example  # noqa: E402

WORDS = ["a", "small", "big", "red", "green", "blue", "circle", "square", "triangle", "left", "right", "of"]


def make_inputs(n, source_size, seed=0):
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        pixels = rng.integers(0, 256, (source_size, source_size, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
        images.append(buffer.getvalue())
    texts = [" ".join(rng.choice(WORDS, size=rng.integers(3, 9))) for _ in range(n)]
    return images, texts


class PythonPath:
    """PIL + Python tokenizer + ``model.predict`` (or ``model(x)``)."""

    def __init__(self, model):
        self.model = model
        self.height, self.width = model.image_size
        vocabulary = model.tokenizer.get_vocabulary()
        self.ids = {token: i for i, token in enumerate(vocabulary)}
        self.length = model.sequence_length
        self.unk = model.tokenizer.unk_id
        self.uses_text = "token_ids" in model.model_input_names

    def preprocess(self, images, texts):
        pixels = np.stack(
            [
                np.asarray(
                    Image.open(io.BytesIO(b)).convert("RGB").resize((self.width, self.height), Image.BILINEAR),
                    dtype=np.float32,
                )
                for b in images
            ]
        )
        x = {"image": pixels}
        if self.uses_text:
            token_ids = np.zeros((len(texts), self.length), np.int32)
            for row, text in enumerate(texts):
                tokens = re.findall(r"\w+|[^\w\s]", text.lower())[: self.length]
                token_ids[row, : len(tokens)] = [self.ids.get(t, self.unk) for t in tokens]
            x["token_ids"] = token_ids
        return x

    def predict(self, images, texts):
        return self.model.predict(self.preprocess(images, texts), verbose=0, batch_size=len(images))

    def call(self, images, texts):
        return self.model(self.preprocess(images, texts), training=False)


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return np.array(times)


def example_cost(serving, tf_example, images, texts, repeats):
    """Medians (s) of raw ``serving_default`` and ``tf_example`` calls on the same batch, the
    quartiles of their per-pair ratio, the median time of encoding the Examples in Python,
    and the serialized size over the raw strings' size."""
    feed = {"image_bytes": tf.constant(images)}
    features = [{"image/encoded": image} for image in images]
    if "text" in serving.structured_input_signature[1]:
        feed["text"] = tf.constant(texts)
        features = [{**f, "text": t} for f, t in zip(features, texts)]
    examples = tf.constant([encode_example(f) for f in features])
    raw_out, example_out = serving(**feed), tf_example(examples=examples)
    for key in raw_out:  # the same outputs, or the comparison means nothing
        np.testing.assert_array_equal(raw_out[key].numpy(), example_out[key].numpy())
    for _ in range(2):
        serving(**feed), tf_example(examples=examples)
    # Alternate the two calls so that a change in the machine's load hits both alike.
    pairs = np.array([(timed(lambda: serving(**feed), 1)[0], timed(lambda: tf_example(examples=examples), 1)[0])
                      for _ in range(max(repeats, 50))])
    t_raw, t_example = np.median(pairs, axis=0)
    ratios = np.percentile(pairs[:, 1] / pairs[:, 0], [25, 50, 75])
    t_encode = np.median(timed(lambda: [encode_example(f) for f in features], repeats))
    raw_bytes = sum(len(b) for b in images) + sum(len(t.encode()) for t in texts if "text" in feed)
    example_bytes = sum(len(e) for e in examples.numpy())
    return t_raw, t_example, ratios, t_encode, example_bytes / raw_bytes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (about a minute)")
    parser.add_argument("--model", default="concat_classifier")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--source-size", type=int, default=128, help="side of the encoded JPEGs")
    args = parser.parse_args(argv)

    repeats_1 = 30 if args.quick else 200
    repeats_32 = 5 if args.quick else 30

    model = mmzoo.build(args.model, preset=args.preset, **shapes_model_kwargs(mmzoo.get_entry(args.model).task))
    python = PythonPath(model)
    with tempfile.TemporaryDirectory() as tmp:
        version_dir = export_saved_model(
            model, os.path.join(tmp, args.model), verify=False, warmup=False, input_type="tf_example"
        )
        import tensorflow_text  # noqa: F401

        loaded = tf.saved_model.load(version_dir)
        serving, tf_example = loaded.signatures["serving_default"], loaded.signatures["tf_example"]
        needs_text = "text" in serving.structured_input_signature[1]

        def export_fn(images, texts):
            feed = {"image_bytes": tf.constant(images)}
            if needs_text:
                feed["text"] = tf.constant(texts)
            return serving(**feed)

        images, texts = make_inputs(32, args.source_size)
        results, examples = {}, {}
        for batch, repeats in ((1, repeats_1), (32, repeats_32)):
            b_images, b_texts = images[:batch], texts[:batch]
            # same predictions from both paths (PIL and TF resize differ slightly)
            ref = np.asarray(python.call(b_images, b_texts)["scores"])
            got = export_fn(b_images, b_texts)["scores"].numpy()
            agree = float((ref.argmax(-1) == got.argmax(-1)).mean())
            for fn in (export_fn, python.predict, python.call):  # warm up / trace
                fn(b_images, b_texts)
                fn(b_images, b_texts)
            t_export = timed(lambda: export_fn(b_images, b_texts), repeats)
            t_predict = timed(lambda: python.predict(b_images, b_texts), repeats)
            t_call = timed(lambda: python.call(b_images, b_texts), repeats)
            results[batch] = (t_export, t_predict, t_call, agree)
            examples[batch] = example_cost(serving, tf_example, b_images, b_texts, repeats)

    print(f"model={args.model} preset={args.preset} image_size={model.image_size} "
          f"source JPEG {args.source_size}x{args.source_size} quick={args.quick} device=CPU")
    rows = report(results, examples, f"`{args.model}` ({args.preset})")
    print(json.dumps(contract_report("serving", rows, argv)), flush=True)


def report(results, examples, label):
    """Print the per-batch lines; return the README rows."""
    for batch, (t_export, t_predict, t_call, agree) in results.items():
        print(
            f"batch {batch:>2}: speedup export vs PIL+python tokens+model.predict = "
            f"{np.median(t_predict) / np.median(t_export):.2f}x ; vs PIL+python tokens+model(x) = "
            f"{np.median(t_call) / np.median(t_export):.2f}x ; top-1 agreement {agree:.2f}"
        )
    for batch, (t_raw, t_example, ratios, t_encode, size) in examples.items():
        print(f"batch {batch:>2}: tf_example / serving_default call = {ratios[1]:.3f}x "
              f"(quartiles {ratios[0]:.3f}-{ratios[2]:.3f}) "
              f"({t_example * 1e3:.2f} vs {t_raw * 1e3:.2f} ms); Example encoding in Python {t_encode * 1e3:.3f} ms; "
              f"request bytes x{size:.3f}")
    t_export, t_predict, _, _ = results[1]
    print(
        f"batch  1 latency export: p50 {np.percentile(t_export, 50) * 1e3:.2f} ms, "
        f"p99 {np.percentile(t_export, 99) * 1e3:.2f} ms ; python+predict: p50 "
        f"{np.percentile(t_predict, 50) * 1e3:.2f} ms, p99 {np.percentile(t_predict, 99) * 1e3:.2f} ms"
    )

    def ratio(batch, index):
        return np.median(results[batch][index]) / np.median(results[batch][0])

    return [
        {"figure": f"exported `serving_default` vs PIL + Python tokenization + `model.predict`, batch 32, {label}",
         "goal": ">= 2x", "value": f"{ratio(32, 1):.1f}x", "met": bool(ratio(32, 1) >= 2.0)},
        {"figure": "same, batch 1", "goal": None,
         "value": f"{ratio(1, 1):.1f}x; export p50 {np.percentile(t_export, 50) * 1e3:.1f} ms, "
                  f"p99 {np.percentile(t_export, 99) * 1e3:.1f} ms", "met": None},
        {"figure": "exported `serving_default` vs PIL + Python tokenization + direct `model(x)`, batch 32 / 1",
         "goal": None, "value": f"{ratio(32, 2):.1f}x / {ratio(1, 2):.1f}x", "met": None},
        *example_rows(examples),
    ]


def example_rows(examples):
    """The tf.Example rows: call-time ratio per batch, Python encoding, request bytes."""
    (r32, e32, q32, enc32, size32), (r1, e1, q1, enc1, _) = examples[32], examples[1]
    return [
        {"figure": "tf.Example request (`tf_example`, parsed in-graph) vs raw tensors (`serving_default`), "
                   "signature call time, same batch 32 / 1: median per-pair ratio (quartiles; medians)", "goal": None,
         "value": f"{q32[1]:.2f}x ({q32[0]:.2f}-{q32[2]:.2f}; {e32 * 1e3:.1f} vs {r32 * 1e3:.1f} ms) / "
                  f"{q1[1]:.2f}x ({q1[0]:.2f}-{q1[2]:.2f}; {e1 * 1e3:.2f} vs {r1 * 1e3:.2f} ms)", "met": None},
        {"figure": "client side: encoding the Examples in Python (stdlib `encode_example`), batch 32 / 1; "
                   "request bytes, Examples / raw strings", "goal": None,
         "value": f"{enc32 * 1e3:.2f} ms / {enc1 * 1e3:.3f} ms; x{size32:.3f}", "met": None},
    ]


if __name__ == "__main__":
    main()
