"""Training throughput (examples/s): file-based tf.data pipeline vs in-memory arrays, XLA vs not.

For each head's default entry (``cross_attention_classifier``,
``dual_encoder``, ``transformer_captioner``; ``--models`` picks others, e.g.
``multitask_classifier``) it writes a shapes manifest of PNG files and trains
the same compiled model, in one run, fed two ways:

* pipeline: what ``mmzoo train`` feeds (``cache="auto"``): the images decoded
  once (``mmzoo.data.decode_images``) and ``make_dataset(records, model,
  decoded_images=...)`` (gather, tokenize, ``training_example``, shuffled,
  repeated, all in tf.data);
* files: ``make_dataset(records, model)`` reading and decoding the PNG files
  at every step (``mmzoo train --cache none``, for data larger than memory);
* arrays: the same examples materialised once as numpy arrays (one pass of
  the pipeline, concatenated) and given to ``model.fit(x, y, batch_size=...)``.

and then a second copy of the model compiled with ``jit_compile=True`` (fed by
the pipeline) against the ``jit_compile=False`` one. Each rate is the
steady state of one ``fit`` call of ``--steps`` steps (the first ``--skip``
steps, which create the iterator and fill the prefetch buffer, are not timed),
after a warm-up call per variant (tracing, XLA compilation, file cache); the
variants are interleaved (order alternating per repeat) and the median of
``--repeats`` calls is reported. Figures are the ratios: pipeline / arrays
(goal: at least 0.9, i.e. the pipeline at most 10% slower) and jit / no-jit.

    python benchmarks/training.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import mmzoo  # noqa: E402
from mmzoo.data import decode_images, generate_shapes_dataset, make_dataset, read_manifest  # noqa: E402

DEFAULT_MODELS = ("cross_attention_classifier", "dual_encoder", "transformer_captioner")
PIPELINE_GOAL = 0.9  # pipeline rate / in-memory rate: at most 10% slower


def _to_numpy(tree):
    return keras.tree.map_structure(lambda t: np.asarray(t), tree)


def materialise(dataset):
    """One pass of ``dataset`` as numpy: ``(x, y, sample_weight)`` (``y``/``sample_weight`` may be None)."""
    batches = [_to_numpy(b) for b in dataset]
    first = batches[0]
    parts = list(first) if isinstance(first, tuple) else [first]
    columns = []
    for i in range(len(parts)):
        columns.append(keras.tree.map_structure(lambda *leaves: np.concatenate(leaves), *[b[i] if isinstance(b, tuple) else b for b in batches]))
    columns += [None] * (3 - len(columns))
    return tuple(columns)


def build(name, preset, seed, tokenizer=None):
    keras.utils.set_random_seed(seed)
    kwargs = {"tokenizer": tokenizer} if tokenizer is not None else {}
    return mmzoo.build(name, preset=preset, **kwargs)


def compile_model(model, jit):
    model.compile()
    model.compile(optimizer=model.optimizer, jit_compile=jit)
    if jit and not model.jit_compile:
        # Keras refuses XLA because the (unused in the step) string
        # preprocessing layers are tracked; mmzoo train lifts that the same way.
        from mmzoo.training import _force_jit

        _force_jit(model)
    return bool(model.jit_compile)


class _StepClock(keras.callbacks.Callback):
    """Wall time of the batches after the first ``skip`` of a ``fit`` call (steady state)."""

    def __init__(self, skip):
        super().__init__()
        self.skip = skip
        self.times = []

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter())


def timed_fit(model, steps, batch_size, skip, pipeline=None, arrays=None):
    """Steady-state examples/s of one ``fit`` call of ``steps`` steps (the first
    ``skip`` steps, which include creating the iterator, are not timed)."""
    clock = _StepClock(skip)
    if pipeline is not None:
        model.fit(pipeline, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[clock])
    else:
        x, y, sample_weight = arrays
        model.fit(x, y, sample_weight=sample_weight, batch_size=batch_size, epochs=1, steps_per_epoch=steps,
                  shuffle=True, verbose=0, callbacks=[clock])
    timed = clock.times[skip - 1:]
    return (len(timed) - 1) * batch_size / (timed[-1] - timed[0])


def bench_model(name, records, args):
    model = build(name, args.preset, seed=0)
    compile_model(model, jit=False)
    decoded = decode_images(records, model)
    pipeline = make_dataset(records, model, batch_size=args.batch_size, training=True, seed=0, repeat=True,
                            drop_remainder=True, decoded_images=decoded)
    files = make_dataset(records, model, batch_size=args.batch_size, training=True, seed=0, repeat=True,
                         drop_remainder=True)
    one_pass = make_dataset(records, model, batch_size=args.batch_size, training=False, drop_remainder=True)
    arrays = materialise(one_pass)
    num_examples = len(keras.tree.flatten(arrays[0])[0])
    if num_examples < args.steps * args.batch_size:
        raise SystemExit(
            f"{name}: {num_examples} examples < steps x batch ({args.steps} x {args.batch_size}); use more --num-images"
        )

    jit_model = build(name, args.preset, seed=0)
    jit_error = None
    try:
        jit_on = compile_model(jit_model, jit=True)
        jit_pipeline = make_dataset(records, jit_model, batch_size=args.batch_size, training=True, seed=0,
                                    repeat=True, drop_remainder=True, decoded_images=decoded)
    except Exception as e:  # noqa: BLE001  (reported as a row)
        jit_on, jit_error = False, f"{type(e).__name__}: {e}"

    steps, skip, bs = args.steps, args.skip, args.batch_size
    variants = {
        "pipeline": lambda: timed_fit(model, steps, bs, skip, pipeline=pipeline),
        "arrays": lambda: timed_fit(model, steps, bs, skip, arrays=arrays),
        "files": lambda: timed_fit(model, steps, bs, skip, pipeline=files),
    }
    if jit_on and jit_error is None:
        variants["jit"] = lambda: timed_fit(jit_model, steps, bs, skip, pipeline=jit_pipeline)
    rates = {k: [] for k in variants}
    for key in list(variants):  # warm-up: trace, compile (XLA), fill the file cache
        try:
            variants[key]()
        except Exception as e:  # noqa: BLE001
            if key != "jit":
                raise
            jit_error = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
            del variants["jit"], rates["jit"]
    order = list(variants)
    for r in range(args.repeats):
        for key in order if r % 2 == 0 else order[::-1]:
            rates[key].append(variants[key]())
    med = {k: statistics.median(v) for k, v in rates.items()}
    result = {
        "model": name,
        "params": int(model.count_params()),
        "num_examples": num_examples,
        "pipeline": med["pipeline"],
        "arrays": med["arrays"],
        "pipeline_ratio": med["pipeline"] / med["arrays"],
        "files": med["files"],
        "files_ratio": med["files"] / med["arrays"],
        "jit": med.get("jit"),
        "jit_ratio": (med["jit"] / med["pipeline"]) if "jit" in med else None,
        "jit_error": jit_error if "jit" not in med else None,
        "all_rates": rates,
    }
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny presets, 32x32 images, few steps (a few minutes)")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated zoo entries")
    parser.add_argument("--preset", default=None, help="default 'default' ('tiny' with --quick)")
    parser.add_argument("--num-images", type=int, default=None, help="default 1024 (480 with --quick)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=None, help="steps per fit call (default 30, 14 with --quick)")
    parser.add_argument("--skip", type=int, default=4, help="first steps of each fit call left out of the timing")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per variant (default 5, 3 with --quick)")
    parser.add_argument("--data-dir", default=None, help="where to write the images (default: a temp dir)")
    args = parser.parse_args(argv)
    args.preset = args.preset or ("tiny" if args.quick else "default")
    num_images = args.num_images or (480 if args.quick else 1024)
    args.steps = args.steps or (14 if args.quick else 30)
    if args.steps < args.skip + 2:
        raise SystemExit(f"--steps must be at least --skip + 2. Received: steps={args.steps}, skip={args.skip}")
    args.repeats = args.repeats or (3 if args.quick else 5)
    names = [n.strip() for n in args.models.split(",") if n.strip()]

    image_size = 32 if args.preset == "tiny" else 64
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="mmzoo_bench_training_")
    manifest = generate_shapes_dataset(data_dir, num_images=num_images, image_size=image_size, seed=0)
    records = read_manifest(manifest)
    print(f"training throughput: preset {args.preset}, {num_images} PNG {image_size}x{image_size} images, "
          f"batch {args.batch_size}, {args.steps} steps per fit ({args.skip} untimed), median of {args.repeats} interleaved calls, "
          f"cpus {os.cpu_count()}")

    rows = []
    for name in names:
        r = bench_model(name, records, args)
        print(f"{name} ({r['params']:,} params, {r['num_examples']} examples in memory):")
        print(f"  pipeline (mmzoo train: images decoded once, tf.data): {r['pipeline']:8.1f} examples/s")
        print(f"  arrays   (numpy in memory): {r['arrays']:8.1f} examples/s")
        print(f"  RATIO pipeline/arrays: {r['pipeline_ratio']:.2f} (goal >= {PIPELINE_GOAL})")
        print(f"  files (decode every step, --cache none): {r['files']:8.1f} examples/s; "
              f"RATIO files/arrays: {r['files_ratio']:.2f}")
        if r["jit"] is not None:
            print(f"  jit_compile=True (pipeline): {r['jit']:8.1f} examples/s; RATIO jit/no-jit: {r['jit_ratio']:.2f}")
        else:
            print(f"  jit_compile=True: not measured ({r['jit_error']})")
        rows.append({
            "figure": f"`{name}` training, `mmzoo train`'s tf.data pipeline vs in-memory arrays (examples/s)",
            "goal": f">= {PIPELINE_GOAL:.2f}x (at most 10% slower)",
            "value": f"{r['pipeline_ratio']:.2f}x ({r['pipeline']:.0f} vs {r['arrays']:.0f})",
            "met": bool(r["pipeline_ratio"] >= PIPELINE_GOAL),
        })
        rows.append({
            "figure": f"`{name}` training, decoding the files every step (`--cache none`) vs in-memory arrays",
            "goal": None,
            "value": f"{r['files_ratio']:.2f}x ({r['files']:.0f} vs {r['arrays']:.0f})",
            "met": None,
        })
        rows.append({
            "figure": f"`{name}` training, `jit_compile=True` vs False (examples/s)",
            "goal": None,
            "value": (f"{r['jit_ratio']:.2f}x ({r['jit']:.0f} vs {r['pipeline']:.0f})" if r["jit"] is not None
                      else "XLA failed"),
            "met": None,
        })
    command = shlex.join(["python", "benchmarks/training.py", *(sys.argv[1:] if argv is None else argv)])
    print(json.dumps({"benchmark": "training", "command": command, "rows": rows}))
    return rows


if __name__ == "__main__":
    main()
