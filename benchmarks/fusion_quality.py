"""What fusion buys: every classifier entry on the shapes question task, plus GMU gates.

Part 1 trains every classification zoo entry (the four fusions and the two
unimodal baselines) on the built-in shapes "question" task with the same
preset, data, budget and seed, through the same engine as ``mmzoo train``
(``mmzoo.training.train``), and prints a markdown table of held-out accuracy
and macro-F1. The task needs both modalities: "what color is the circle" /
"what shape is the red one" about an image of 2-3 shapes, so a text-only model
is capped at 0.25 accuracy, an image-only one at about 0.21 (chance over the
9 answers: 0.11), while a model that fuses the two can answer every question.

Part 2 is the synthetic experiment of the Gated Multimodal Unit paper
(Arevalo et al., 2017): ``gated_classifier`` on a task (which colours are in
the picture, multi-label) where one modality is pure noise, once each way:

* text is noise: real images, every text replaced by random words
  (``text_noise=1.0`` in the shapes generator);
* image is noise: uniform noise images, the text is a caption of the
  (unseen) picture, which names every colour in it.

It prints the mean gate value per modality (``model.fusion_gates``) on
held-out data: the gate should trust the informative modality.

    python benchmarks/fusion_quality.py            # default budget (minutes per model on a CPU)
    python benchmarks/fusion_quality.py --quick    # smoke run
    python benchmarks/fusion_quality.py --epochs 20 --num-train 6000
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from mmzoo.data import generate_shapes_dataset, make_dataset, read_manifest  # noqa: E402
from mmzoo.data.manifest import write_manifest  # noqa: E402
from mmzoo.data.records import Record  # noqa: E402
from mmzoo.training import train  # noqa: E402

ENTRIES = (
    ("concat_classifier", "concat"),
    ("gated_classifier", "gated"),
    ("cross_attention_classifier", "cross_attention"),
    ("late_fusion_classifier", "late"),
    ("image_only_classifier", "image only (baseline)"),
    ("text_only_classifier", "text only (baseline)"),
)
UNIMODAL = ("image_only_classifier", "text_only_classifier")
# Ceilings of the unimodal baselines on the question task (mmzoo.data.shapes).
CEILINGS = {"image_only_classifier": 0.21, "text_only_classifier": 0.25}
CHANCE = 1.0 / 9.0


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small data and budget (smoke run)")
    p.add_argument("--num-train", type=int, default=None, help="training images")
    p.add_argument("--num-test", type=int, default=None, help="held-out images")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--preset", default=None)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--gate-epochs", type=int, default=None, help="epochs of the noise-modality runs")
    p.add_argument("--models", nargs="*", default=None, help="subset of the classifier entries")
    p.add_argument("--skip-gates", action="store_true", help="skip the noise-modality experiment")
    p.add_argument(
        "--train-min-shapes", type=int, default=1,
        help="fewest shapes per training image (1 adds one-shape scenes, where each question "
        "supervises a single object; held-out images always have 2-3 shapes)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None, help="where to write the shapes data (default: a temp dir)")
    args = p.parse_args(argv)
    plan = (
        dict(num_train=1000, num_test=300, epochs=5, image_size=32, preset="tiny", gate_epochs=3)
        if args.quick
        else dict(num_train=8000, num_test=1000, epochs=25, image_size=32, preset="tiny", gate_epochs=4)
    )
    for key, value in plan.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def _train(name, manifests, args, out_root, epochs):
    result = train(
        name,
        manifests["train"],
        val_data=manifests["test"],
        epochs=epochs,
        batch_size=args.batch_size,
        preset=args.preset,
        out_dir=os.path.join(out_root, name),
        overrides={"image_size": [args.image_size, args.image_size]},
        seed=args.seed,
        verbose=0,
    )
    return result


def fusion_table(args, data_dir, out_root):
    folder = os.path.join(data_dir, "question")
    manifests = {
        "train": generate_shapes_dataset(
            folder, num_images=args.num_train, image_size=args.image_size, seed=args.seed, split="train",
            num_shapes=(args.train_min_shapes, 3),
        ),
        "test": generate_shapes_dataset(
            folder, num_images=args.num_test, image_size=args.image_size, seed=args.seed, split="test",
            num_shapes=(2, 3),
        ),
    }
    names = [n for n, _ in ENTRIES if not args.models or n in args.models]
    rows = {}
    for name in names:
        result = _train(name, manifests, args, out_root, args.epochs)
        rows[name] = result
        m = result["metrics"]
        print(
            f"  {name:<28} accuracy {m['accuracy']:.3f}  macro-F1 {m['macro_f1']:.3f}  "
            f"({result['train_seconds']:.0f}s)",
            flush=True,
        )

    print()
    print(
        f"Shapes question task, {args.num_train} training / {args.num_test} held-out images at "
        f"{args.image_size}x{args.image_size} (training scenes: {args.train_min_shapes}-3 shapes, held-out: 2-3), preset '{args.preset}', {args.epochs} epochs, "
        f"batch {args.batch_size}, seed {args.seed}."
    )
    print()
    print("| model | fusion | params | held-out accuracy | macro-F1 | ceiling |")
    print("|---|---|---:|---:|---:|---:|")
    labels = dict(ENTRIES)
    for name in names:
        r = rows[name]
        ceiling = f"{CEILINGS[name]:.2f}" if name in CEILINGS else "1.00"
        print(
            f"| `{name}` | {labels[name]} | {r['num_params']:,} | {r['metrics']['accuracy']:.3f} | "
            f"{r['metrics']['macro_f1']:.3f} | {ceiling} |"
        )
    print(f"\nChance: {CHANCE:.2f} (9 answers).")
    fused = [n for n in names if n not in UNIMODAL]
    unimodal = [n for n in names if n in UNIMODAL]
    if fused and unimodal:
        best_fused = max(fused, key=lambda n: rows[n]["metrics"]["accuracy"])
        best_uni = max(unimodal, key=lambda n: rows[n]["metrics"]["accuracy"])
        fa, ua = rows[best_fused]["metrics"]["accuracy"], rows[best_uni]["metrics"]["accuracy"]
        print(
            f"Best fused ({best_fused}) / best unimodal ({best_uni}) accuracy: "
            f"{fa:.3f} / {ua:.3f} = {fa / max(ua, 1e-9):.2f}x"
        )
    return rows


# ------------------------------------------------------------------ GMU gates
def _noise_image_manifest(folder, num_images, image_size, seed, split):
    """Colours task where the image is noise and the text (a caption) is informative."""
    from mmzoo.data.shapes import iter_shapes_scenes

    import tensorflow as tf

    rng = np.random.default_rng([seed, 7, {"train": 1, "test": 3}[split]])
    image_dir = os.path.join(folder, split, "images")
    os.makedirs(image_dir, exist_ok=True)
    records = []
    scenes = iter_shapes_scenes(num_images, image_size, seed=seed, split=split, label_type="colors")
    for i, (_, _, label, captions, _) in enumerate(scenes):
        noise = rng.integers(0, 256, size=(image_size, image_size, 3), dtype=np.uint8)
        path = os.path.join(image_dir, f"{i:06d}.png")
        with open(path, "wb") as f:
            f.write(tf.io.encode_png(noise).numpy())
        records.append(Record(os.path.abspath(path), captions[0], label, captions))
    return write_manifest(records, os.path.join(folder, split, "manifest.jsonl"))


def _mean_gates(model_path, test_manifest, batch_size):
    model = keras.saving.load_model(model_path)
    records = read_manifest(test_manifest)
    gates = []
    for x, _ in make_dataset(records, model, batch_size=batch_size, training=False):
        gates.append(np.asarray(model.fusion_gates(x)))
    return np.concatenate(gates).mean(axis=0)


def gate_experiment(args, data_dir, out_root):
    n_train, n_test = args.num_train, args.num_test
    variants = {}
    folder = os.path.join(data_dir, "text_noise")
    variants["text is noise (random words)"] = {
        split: generate_shapes_dataset(
            folder, num_images=n, image_size=args.image_size, seed=args.seed, split=split,
            label_type="colors", text_noise=1.0,
        )
        for split, n in (("train", n_train), ("test", n_test))
    }
    folder = os.path.join(data_dir, "image_noise")
    variants["image is noise (uniform pixels)"] = {
        split: _noise_image_manifest(folder, n, args.image_size, args.seed, split)
        for split, n in (("train", n_train), ("test", n_test))
    }
    print()
    print(
        f"GMU synthetic experiment: `gated_classifier` (preset '{args.preset}', {args.gate_epochs} epochs) "
        "on 'which colours are in the picture' (multi-label), one modality pure noise."
    )
    print()
    print("| variant | micro-F1 | mean gate: image | mean gate: text |")
    print("|---|---:|---:|---:|")
    out = {}
    for label, manifests in variants.items():
        result = _train("gated_classifier", manifests, args, os.path.join(out_root, label.split()[0]), args.gate_epochs)
        gates = _mean_gates(result["model_path"], manifests["test"], args.batch_size)
        f1 = result["metrics"].get("micro_f1", float("nan"))
        print(f"| {label} | {f1:.3f} | {gates[0]:.3f} | {gates[1]:.3f} |", flush=True)
        out[label] = {"micro_f1": f1, "gates": gates.tolist()}
    return out


def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or os.path.join(tmp, "data")
        out_root = os.path.join(tmp, "runs")
        start = time.perf_counter()
        print(f"Training {len(args.models or ENTRIES)} classifier entries on the shapes question task ...", flush=True)
        fusion_rows = fusion_table(args, data_dir, out_root)
        gates = gate_experiment(args, data_dir, out_root) if not args.skip_gates else {}
        print(f"\n(total {time.perf_counter() - start:.0f}s)")
    print(json.dumps(json_report(args, fusion_rows, gates, argv)))


def json_report(args, fusion_rows, gates, argv=None):
    """The benchmark contract's JSON last line (rows for benchmarks/run.py)."""
    rows = []
    for name, result in fusion_rows.items():
        m = result["metrics"]
        ceiling = CEILINGS.get(name, 1.0)
        rows.append({
            "figure": f"`{name}` held-out accuracy (ceiling {ceiling:.2f}; {args.num_train} train images, "
                      f"{args.epochs} epochs, preset {args.preset})",
            "goal": None, "value": f"{m['accuracy']:.3f} (macro-F1 {m['macro_f1']:.3f})", "met": None,
        })
    fused = [n for n in fusion_rows if n not in UNIMODAL]
    unimodal = [n for n in fusion_rows if n in UNIMODAL]
    if fused and unimodal:
        best_fused = max(fused, key=lambda n: fusion_rows[n]["metrics"]["accuracy"])
        best_uni = max(unimodal, key=lambda n: fusion_rows[n]["metrics"]["accuracy"])
        fa, ua = fusion_rows[best_fused]["metrics"]["accuracy"], fusion_rows[best_uni]["metrics"]["accuracy"]
        rows.append({
            "figure": "best fused / best unimodal held-out accuracy", "goal": "best fused >= 0.95",
            "value": f"{fa / max(ua, 1e-9):.1f}x ({best_fused} {fa:.3f} / {best_uni} {ua:.3f})",
            "met": bool(fa >= 0.95),
        })
    for label, result in gates.items():
        informative = 0 if label.startswith("text is noise") else 1  # gate index: 0 image, 1 text
        rows.append({
            "figure": f"GMU gate, {label}: mean gate image / text",
            "goal": f"gate on the {'image' if informative == 0 else 'text'} > 0.5",
            "value": f"{result['gates'][0]:.3f} / {result['gates'][1]:.3f} (micro-F1 {result['micro_f1']:.3f})",
            "met": bool(result["gates"][informative] > 0.5),
        })
    command = shlex.join(["python", "benchmarks/fusion_quality.py", *(sys.argv[1:] if argv is None else argv)])
    return {"benchmark": "fusion_quality", "command": command, "rows": rows}


if __name__ == "__main__":
    main()
