"""Training throughput (examples/s): tf.data pipeline vs in-memory arrays, XLA, mixed precision, MFU.

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

Mixed precision (issue #7): a third copy of the entry is built and compiled
under ``--mixed-precision`` (``auto``: ``mixed_float16`` when TensorFlow sees a
GPU, else ``mixed_bfloat16``; the global dtype policy is set around
``mmzoo.build`` and ``compile`` and restored afterwards, as ``mmzoo train
--mixed-precision`` does; the zoo keeps its output layers in float32), fed
the same pipeline and timed in the same interleaved rounds; the figure is
mixed / float32 examples/s. On a GPU this is the issue's figure; on a CPU
without AVX-512 BF16 (or AMX) ``mixed_bfloat16`` is expected to be slower
(casts, no native bfloat16 matmuls), and with the tiny presets the casts
weigh on it even with them, so the CPU figure is for reference.

Model FLOPs utilisation: ``count_training_flops`` counts the forward FLOPs
of one example with TensorFlow's graph profiler (``total_float_ops`` of the
model's forward traced at batch 1: 2 FLOPs per multiply-add of MatMul,
BatchMatMul, Conv2D and Einsum, 1 per element of adds, muls, reductions;
activations such as ReLU/GELU/tanh count nothing, as the profiler's registry
has it; recurrent layers are traced unrolled so every time step counts), and
a training example costs 3 x forward (the usual convention: the backward
pass is twice the forward). The count leaves out what batch 1 cannot show
(the loss, and the dual encoder's batch x batch similarities, O(batch x
dim) per example) and does not depend on the dtype, so both variants use
it. MFU = train FLOPs/example x examples/s / peak
FLOPs/s, for the float32 pipeline variant and the mixed-precision one. The
peak is ``--peak-tflops`` or, on a GPU, NVIDIA's dense (no sparsity) data
sheet figure for the GPU's name (``GPU_PEAK_TFLOPS``): the 16-bit tensor-core
peak for mixed precision, the TF32 tensor-core peak for float32 when TF32 is
enabled (TensorFlow's default on Ampere and later) and the plain FP32 peak
otherwise. Without a GPU and without ``--peak-tflops`` the MFU row says so.

    python -m benchmarks.training --quick
    python -m benchmarks.training --quick --models dual_encoder --mixed-precision none
    python -m benchmarks.training --quick --peak-tflops 0.2   # a CPU MFU against your own peak
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import mmzoo  # noqa: E402
from benchmarks.run import contract_report  # noqa: E402
from mmzoo.data import decode_images, make_dataset, read_manifest  # noqa: E402
from mmzoo.datasets.shapes import generate_shapes_dataset, shapes_model_kwargs  # noqa: E402

DEFAULT_MODELS = ("cross_attention_classifier", "dual_encoder", "transformer_captioner")
PIPELINE_GOAL = 0.9  # pipeline rate / in-memory rate: at most 10% slower
MIXED_PRECISION_CHOICES = ("auto", "mixed_float16", "mixed_bfloat16", "none")
TRAIN_FLOPS_PER_FORWARD = 3  # forward + backward (about 2x the forward: grads w.r.t. inputs and weights)

#: Peak TFLOPS (dense, i.e. without 2:4 structured sparsity) from NVIDIA's data
#: sheets, keyed by a word of ``get_device_details(gpu)["device_name"]`` (the
#: first match wins, so the specific names come first). Columns: 16-bit
#: tensor core (FP16/BF16; the data sheets print twice this "with sparsity"),
#: TF32 tensor core (None: the GPU has none), plain FP32 (CUDA cores).
GPU_PEAK_TFLOPS = (
    # H200 data sheet: SXM BF16/FP16 1,979* and TF32 989* (* sparse), FP32 67; NVL 1,671* / 835* / 60.
    ("H200 NVL", 835.5, 417.5, 60.0),
    ("H200", 989.5, 494.5, 67.0),
    # H100 data sheet: SXM 1,979* / 989* / 67; PCIe 1,513* / 756* / 51; NVL 1,671* / 835* / 60.
    ("H100 NVL", 835.5, 417.5, 60.0),
    ("H100 PCIe", 756.5, 378.0, 51.0),
    ("H100", 989.5, 494.5, 67.0),  # "NVIDIA H100 80GB HBM3": the SXM5 board
    # A100 data sheet (SXM and PCIe alike): BF16/FP16 312 (624*), TF32 156 (312*), FP32 19.5.
    ("A100", 312.0, 156.0, 19.5),
    # L40S data sheet: BF16/FP16 362.05 (733*), TF32 183 (366*), FP32 91.6.
    ("L40S", 362.05, 183.0, 91.6),
    # L4 data sheet: BF16/FP16 242* and TF32 120* (sparse only), FP32 30.3.
    ("L4", 121.0, 60.0, 30.3),
    # A10G (AWS) has no data sheet of its own; these are the A10's: BF16/FP16 125 (250*),
    # TF32 62.5 (125*), FP32 31.2 -- the A10G's lower clocks may make them an overestimate.
    ("A10G", 125.0, 62.5, 31.2),
    ("A10", 125.0, 62.5, 31.2),
    # T4 data sheet: mixed-precision FP16/FP32 65 (no BF16 or TF32 tensor cores), FP32 8.1.
    ("T4", 65.0, None, 8.1),
    # V100 data sheet: Tensor Performance (FP16) SXM2 125, PCIe 112, V100S 130; FP32 15.7 / 14 / 16.4.
    ("V100S", 130.0, None, 16.4),
    ("V100-SXM2", 125.0, None, 15.7),
    ("V100", 112.0, None, 14.0),
)


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
    """The entry at ``preset`` for the shapes data: its words (16 tokens) and, for classifiers, its answers."""
    keras.utils.set_random_seed(seed)
    kwargs = shapes_model_kwargs(mmzoo.get_entry(name).task)
    if tokenizer is not None:
        kwargs["tokenizer"] = tokenizer
    return mmzoo.build(name, preset=preset, **kwargs)


def resolve_policy(choice):
    """``--mixed-precision`` to a Keras dtype policy name (None: no mixed-precision variant)."""
    if choice == "none":
        return None
    if choice == "auto":
        return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
    return choice


def build_mixed(name, preset, seed, policy, jit=False):
    """``(model, jit_on)``: the entry built and compiled under the global dtype
    policy ``policy``, which is restored afterwards.

    Through ``mmzoo.training.dtype_policy``, as ``mmzoo train
    --mixed-precision`` does: variables stay float32, layers compute in the
    policy's dtype, the zoo's output layers are built with ``dtype="float32"``;
    under ``mixed_float16`` ``compile`` wraps the optimizer in a
    ``LossScaleOptimizer``.
    """
    from mmzoo.training import dtype_policy

    with dtype_policy(policy):
        model = build(name, preset, seed)
        jit_on = compile_model(model, jit=jit)
    return model, jit_on


def compile_model(model, jit):
    model.compile()
    model.compile(optimizer=model.optimizer, jit_compile=jit)
    if jit and not model.jit_compile:
        # Keras refuses XLA because the (unused in the step) string
        # preprocessing layers are tracked; mmzoo train lifts that the same way.
        from mmzoo.training.keras_compat import force_jit

        force_jit(model)
    return bool(model.jit_compile)


# ------------------------------------------------------------------ model FLOPs
def _einsum_flops(graph, node):
    """FLOPs of an ``Einsum`` (Keras' attention and ``EinsumDense``), which TensorFlow's
    registry does not count: 2 per multiply-add (as its MatMul) over the joint index
    space when some index is summed away, else 1 per element."""
    from tensorflow.python.framework import graph_util

    equation = node.attr["equation"].s.decode().replace(" ", "")
    lhs, _, rhs = equation.partition("->")
    names = [n for n in node.input if not n.startswith("^")]

    def labels(term, rank):
        if "..." not in term:
            return list(term)
        head, tail = term.split("...")
        n = rank - len(head) - len(tail)
        return list(head) + [f"...{n - i}" for i in range(n)] + list(tail)  # broadcast aligns from the right

    sizes = {}
    for term, name in zip(lhs.split(","), names):
        shape = graph_util.tensor_shape_from_node_def_name(graph, name)
        shape.assert_is_fully_defined()
        for label, dim in zip(labels(term, shape.rank), shape.as_list()):
            sizes[label] = max(sizes.get(label, 1), dim)
    kept = set(rhs.replace("...", "")) | ({k for k in sizes if k.startswith("...")} if "..." in rhs else set())
    total = math.prod(sizes.values())
    summed = any(label not in kept for label in sizes)
    if len(names) == 1:
        return _op_stats(total if summed else 0)  # a transpose counts nothing, a reduction 1 per element
    return _op_stats(2 * total if summed else total)


def _op_stats(value):
    from tensorflow.python.framework import ops

    return ops.OpStats("flops", value)


def _register_einsum_flops():
    from tensorflow.python.framework import ops

    try:
        ops.RegisterStatistics("Einsum", "flops")(_einsum_flops)
    except KeyError:  # already registered (by TensorFlow itself, or an earlier import of this file)
        pass


_register_einsum_flops()

# Ops whose FLOPs the profiler cannot see: it counts the top-level graph only,
# not functions called from it (loops, conditionals, calls), nor cuDNN's RNN kernels.
_OPAQUE_OPS = ("While", "StatelessWhile", "If", "StatelessIf", "Case", "StatelessCase", "PartitionedCall",
               "StatefulPartitionedCall", "CudnnRNN", "CudnnRNNV2", "CudnnRNNV3", "DepthwiseConv2dNative", "Conv3D")


@contextlib.contextmanager
def _unrolled_rnns(model):
    """Trace recurrent layers unrolled: one copy of the cell per time step in the
    top-level graph (no ``While`` loop, no cuDNN kernel), so the profiler sees them."""
    layers = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.RNN) and not layer.unroll]
    for layer in layers:
        layer.unroll = True
    try:
        yield
    finally:
        for layer in layers:
            layer.unroll = False


def count_training_flops(model, example_batch):
    """Model FLOPs of one training example: ``{"forward", "train", "uncounted"}``.

    ``example_batch``: the model's input (a tensor, array or dict of them, with a
    leading batch axis), or an ``(x, y[, sample_weight])`` tuple of which ``x`` is
    taken. The forward pass ``model(x, training=False)`` is traced at batch 1 and
    counted with TensorFlow's graph profiler (``total_float_ops``);
    ``train = 3 x forward`` (forward + backward, the backward counted as twice the
    forward: the usual convention for model FLOPs). ``uncounted`` names the op types
    in the graph whose FLOPs the profiler could not see (empty for the zoo's models).
    """
    from tensorflow.python.framework import ops
    from tensorflow.python.profiler import model_analyzer
    from tensorflow.python.profiler.option_builder import ProfileOptionBuilder

    x = example_batch[0] if isinstance(example_batch, tuple) else example_batch
    specs = keras.tree.map_structure(lambda t: tf.TensorSpec((1, *tuple(t.shape)[1:]), tf.as_dtype(t.dtype)), x)

    def forward(inputs):
        return model(inputs, training=False)

    with _unrolled_rnns(model):
        graph = tf.function(forward, autograph=False).get_concrete_function(specs).graph
    options = ProfileOptionBuilder(ProfileOptionBuilder.float_operation()).with_empty_output().build()
    forward_flops = int(model_analyzer.profile(graph, options=options).total_float_ops)
    uncounted = set()
    for op in graph.get_operations():
        if op.type in _OPAQUE_OPS:
            uncounted.add(op.type)
            continue
        try:
            ops.get_stats_for_node_def(graph, op.node_def, "flops")
        except ValueError:  # a registered op whose shape is not static: the profiler skips it too
            uncounted.add(f"{op.type} (unknown shape)")
    return {"forward": forward_flops, "train": TRAIN_FLOPS_PER_FORWARD * forward_flops, "uncounted": sorted(uncounted)}


def _format_flops(flops):
    for unit, scale in (("GFLOP", 1e9), ("MFLOP", 1e6), ("kFLOP", 1e3)):
        if flops >= scale:
            return f"{flops / scale:.3g} {unit}"
    return f"{flops} FLOP"


# ------------------------------------------------------------------ peak FLOPs/s
def gpu_name():
    """The first GPU's name as TensorFlow reports it (None: no GPU)."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    details = tf.config.experimental.get_device_details(gpus[0])
    return details.get("device_name") or gpus[0].name


def gpu_peak_tflops(name):
    """``(key, half, tf32, fp32)`` of ``GPU_PEAK_TFLOPS`` for a GPU name (None: not in the table)."""
    for key, *peaks in GPU_PEAK_TFLOPS:
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(key)}(?![A-Za-z0-9])", name, flags=re.IGNORECASE):
            return (key, *peaks)
    return None


def peak_flops(peak_tflops=None):
    """Peak FLOPs/s per variant: ``({"float32": (flops_s, label), "mixed": (...)}, None)``
    or ``(None, why)`` when there is no peak to divide by."""
    if peak_tflops:
        label = f"{peak_tflops:g} TFLOPS (--peak-tflops)"
        return {"float32": (peak_tflops * 1e12, label), "mixed": (peak_tflops * 1e12, label)}, None
    name = gpu_name()
    if name is None:
        return None, "no GPU: pass --peak-tflops for a CPU figure"
    entry = gpu_peak_tflops(name)
    if entry is None:
        return None, f"GPU {name!r} is not in GPU_PEAK_TFLOPS: pass --peak-tflops"
    key, half, tf32, fp32 = entry
    if tf32 is not None and tf.config.experimental.tensor_float_32_execution_enabled():
        float32 = (tf32 * 1e12, f"{tf32:g} TFLOPS {key} TF32 tensor core")
    else:
        float32 = (fp32 * 1e12, f"{fp32:g} TFLOPS {key} FP32")
    return {"float32": float32, "mixed": (half * 1e12, f"{half:g} TFLOPS {key} FP16/BF16 tensor core")}, None


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

    policy = resolve_policy(args.mixed_precision)
    mixed_error = None
    if policy is not None:
        try:
            mixed_model, _ = build_mixed(name, args.preset, seed=0, policy=policy)
            mixed_pipeline = make_dataset(records, mixed_model, batch_size=args.batch_size, training=True, seed=0,
                                          repeat=True, drop_remainder=True, decoded_images=decoded)
        except Exception as e:  # noqa: BLE001  (reported as a row)
            mixed_error = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    flops = count_training_flops(model, arrays[0])

    steps, skip, bs = args.steps, args.skip, args.batch_size
    variants = {
        "pipeline": lambda: timed_fit(model, steps, bs, skip, pipeline=pipeline),
        "arrays": lambda: timed_fit(model, steps, bs, skip, arrays=arrays),
        "files": lambda: timed_fit(model, steps, bs, skip, pipeline=files),
    }
    if jit_on and jit_error is None:
        variants["jit"] = lambda: timed_fit(jit_model, steps, bs, skip, pipeline=jit_pipeline)
    if policy is not None and mixed_error is None:
        variants["mixed"] = lambda: timed_fit(mixed_model, steps, bs, skip, pipeline=mixed_pipeline)
    rates = {k: [] for k in variants}
    for key in list(variants):  # warm-up: trace, compile (XLA), fill the file cache
        try:
            variants[key]()
        except Exception as e:  # noqa: BLE001
            if key not in ("jit", "mixed"):
                raise
            error = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
            if key == "jit":
                jit_error = error
            else:
                mixed_error = error
            del variants[key], rates[key]
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
        "policy": policy,
        "mixed": med.get("mixed"),
        "mixed_ratio": (med["mixed"] / med["pipeline"]) if "mixed" in med else None,
        "mixed_error": mixed_error if policy is not None and "mixed" not in med else None,
        "flops": flops,
        "all_rates": rates,
    }
    return result


def mfu_value(r, peaks, why):
    """The MFU row's value: achieved / peak FLOPs/s of the float32 pipeline and the mixed variant."""
    if peaks is None:
        return why
    parts = []
    for key, label in (("pipeline", "float32"), ("mixed", r["policy"])):
        rate = r.get(key)
        if rate is None:
            continue
        peak, peak_label = peaks["float32" if key == "pipeline" else "mixed"]
        achieved = r["flops"]["train"] * rate
        parts.append(f"{label} {100 * achieved / peak:.3g}% ({achieved / 1e12:.3g} of {peak_label})")
    return "; ".join(parts)


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
    parser.add_argument("--mixed-precision", choices=MIXED_PRECISION_CHOICES, default="auto",
                        help="policy of the mixed-precision variant (auto: mixed_float16 on a GPU, else "
                             "mixed_bfloat16; none: skip it)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="peak TFLOPS for the MFU row (default: the GPU's data-sheet peak; no GPU: no MFU)")
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
          f"cpus {os.cpu_count()}, mixed precision {resolve_policy(args.mixed_precision) or 'off'}")

    peaks, no_peak_why = peak_flops(args.peak_tflops)
    device = gpu_name() or f"CPU ({os.cpu_count()} cores)"
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
        if r["mixed"] is not None:
            print(f"  {r['policy']} (pipeline): {r['mixed']:8.1f} examples/s; "
                  f"RATIO mixed/float32: {r['mixed_ratio']:.2f}")
        elif r["policy"] is not None:
            print(f"  {r['policy']}: not measured ({r['mixed_error']})")
        fl = r["flops"]
        uncounted = f" (not counted: {', '.join(fl['uncounted'])})" if fl["uncounted"] else ""
        print(f"  model FLOPs per example: forward {fl['forward']:,}, training (3x) {fl['train']:,}{uncounted}")
        mfu = mfu_value(r, peaks, no_peak_why)
        print(f"  MFU on {device}: {mfu}")
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
        if r["policy"] is not None:
            cpu_note = "" if gpu_name() else "; CPU: for reference only"
            rows.append({
                "figure": f"`{name}` training, mixed precision ({r['policy']}) vs float32 (examples/s)",
                "goal": None,
                "value": (f"{r['mixed_ratio']:.2f}x ({r['mixed']:.0f} vs {r['pipeline']:.0f}){cpu_note}"
                          if r["mixed"] is not None else f"failed ({r['mixed_error']})"),
                "met": None,
            })
        rows.append({
            "figure": f"`{name}` model FLOPs per training example (3 x forward, TensorFlow profiler)",
            "goal": None,
            "value": f"{_format_flops(fl['train'])} (forward {_format_flops(fl['forward'])}){uncounted}",
            "met": None,
        })
        rows.append({
            "figure": f"`{name}` training, model FLOPs utilisation (train FLOPs x examples/s / peak)",
            "goal": None,
            "value": mfu,
            "met": None,
        })
    print(json.dumps(contract_report("training", rows, argv)), flush=True)
    return rows


if __name__ == "__main__":
    main()
