"""What fusion buys: every classifier entry on two tasks that need both modalities, plus GMU gates.

Part 1 trains the classifiers of notebook 01 (the concat, gated and
cross-attention fusions and the two unimodal baselines; ``--models`` adds
``late_fusion_classifier``) on the built-in shapes "question" task at the
notebook's budget: the same data sizes, preset, epochs and seed as the full
run of ``notebooks/01_classification.ipynb`` (``NOTEBOOK_PLAN``), through the
same engine as ``mmzoo train`` (``mmzoo.training.train``). The task needs both
modalities: "what color is the circle" / "what shape is the red one" about an
image of 2-3 shapes, so a text-only model is capped at 0.25 accuracy, an
image-only one at about 0.21 (chance over the 9 answers: 0.11), while a model
that fuses the two can answer every question. It prints held-out accuracy,
each fused model's margin over the best baseline, the whole part's wall time,
and the GMU's mean gate per modality on the held-out questions.

Part 2 is the synthetic experiment of the Gated Multimodal Unit paper
(Arevalo et al., 2017): ``gated_classifier`` on a task (which colours are in
the picture, multi-label) where one modality is pure noise, once each way.
The gate should trust the informative modality.

Part 3 is a task on real images that no model here was designed around:
yes/no questions about scikit-learn's handwritten digit scans
(``benchmarks/_digits_questions.py``; both baselines at chance, 0.5). Every
entry trains with its default settings (no preset: what ``mmzoo train NAME``
does), and a plain Keras model written by hand (three Conv2D+MaxPool blocks,
Embedding+BiLSTM, concatenation, two Dense layers) trains on the same data
with the same epochs and batch size.

    python -m benchmarks.fusion_quality            # notebook budget + digits (32 minutes on 2 shared CPUs)
    python -m benchmarks.fusion_quality --quick    # smoke run
    python -m benchmarks.fusion_quality --skip-digits --skip-gates   # part 1 alone
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

from benchmarks.run import contract_report  # noqa: E402
from mmzoo.data import make_dataset, read_manifest  # noqa: E402
from mmzoo.data.manifest import write_manifest  # noqa: E402
from mmzoo.data.records import Record  # noqa: E402
from mmzoo.datasets.shapes import generate_shapes_dataset  # noqa: E402
from mmzoo.training import train  # noqa: E402

ENTRIES = (
    ("cross_attention_classifier", "cross_attention"),
    ("gated_classifier", "gated"),
    ("concat_classifier", "concat"),
    ("late_fusion_classifier", "late"),
    ("image_only_classifier", "image only (baseline)"),
    ("text_only_classifier", "text only (baseline)"),
)
NOTEBOOK_ENTRIES = ("cross_attention_classifier", "gated_classifier", "concat_classifier",
                    "image_only_classifier", "text_only_classifier")
UNIMODAL = ("image_only_classifier", "text_only_classifier")
# Ceilings of the unimodal baselines on the question task (mmzoo.datasets.shapes).
CEILINGS = {"image_only_classifier": 0.21, "text_only_classifier": 0.25}
# Late fusion averages one logit vector per modality, so it cannot bind a
# question to an object: on the shapes questions it can at best pick among
# the k colours (shapes) it sees, (1/2 + 1/3) / 2 = 0.42; on yes/no digits
# questions it is at chance.
STRUCTURAL_CEILINGS = {"late_fusion_classifier": {"shapes": 0.42, "digits": 0.5}}
CHANCE = 1.0 / 9.0
# The full run of notebooks/01_classification.ipynb (keep the two in step).
NOTEBOOK_PLAN = dict(num_train=10000, num_test=500, epochs={"fused": 16, "cross_attention": 16, "baseline": 3})
QUICK_PLAN = dict(num_train=1000, num_test=300, epochs={"fused": 2, "cross_attention": 2, "baseline": 1})
MARGIN_GOAL = 0.2
BEST_FUSED_GOAL = 0.90
NOTEBOOK_SECONDS_GOAL = 600


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small data and budget (smoke run)")
    p.add_argument("--num-train", type=int, default=None, help="training images of the shapes task (default: the notebook's)")
    p.add_argument("--num-test", type=int, default=None, help="held-out images of the shapes task")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs of every shapes model (default: the notebook's, per kind of model)")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--preset", default="tiny", help="preset of the shapes models (default: tiny, as the notebook)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--gate-epochs", type=int, default=None, help="epochs of the noise-modality runs (default 4; quick 2)")
    p.add_argument("--models", nargs="*", default=None,
                   help="shapes entries to train (default: the notebook's five)")
    p.add_argument("--skip-gates", action="store_true", help="skip the noise-modality experiment")
    p.add_argument("--skip-digits", action="store_true", help="skip the digit-scan task")
    p.add_argument("--digits-epochs", type=int, default=None, help="epochs of the digits task (default 8; quick 1)")
    p.add_argument("--digits-preset", default=None, help="preset of the digits models (default: none, the entries' defaults)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None, help="where to write the data (default: a temp dir)")
    args = p.parse_args(argv)
    plan = QUICK_PLAN if args.quick else NOTEBOOK_PLAN
    args.num_train = args.num_train or plan["num_train"]
    args.num_test = args.num_test or plan["num_test"]
    args.epochs_by_kind = {k: args.epochs or v for k, v in plan["epochs"].items()}
    args.gate_epochs = args.gate_epochs or (2 if args.quick else 4)
    args.digits_epochs = args.digits_epochs or (1 if args.quick else 8)
    return args


def _kind(name):
    return "cross_attention" if name.startswith("cross") else "baseline" if name in UNIMODAL else "fused"


def _train(name, manifests, args, out_root, epochs, preset=None, image_size=None):
    overrides = {"image_size": [image_size, image_size]} if image_size else None
    return train(
        name,
        manifests["train"],
        val_data=manifests["test"],
        epochs=epochs,
        batch_size=args.batch_size,
        preset=preset,
        out_dir=os.path.join(out_root, name),
        overrides=overrides,
        seed=args.seed,
        verbose=0,
    )


def _margins(rows):
    """Each fused model's accuracy minus the best unimodal baseline's."""
    unimodal = [rows[n]["metrics"]["accuracy"] for n in rows if n in UNIMODAL]
    if not unimodal:
        return {}
    best = max(unimodal)
    return {n: r["metrics"]["accuracy"] - best for n, r in rows.items() if n not in UNIMODAL}


def fusion_table(args, data_dir, out_root):
    folder = os.path.join(data_dir, "question")
    manifests = {
        "train": generate_shapes_dataset(
            folder, num_images=args.num_train, image_size=args.image_size, seed=args.seed, split="train",
            num_shapes=(1, 3),
        ),
        "test": generate_shapes_dataset(
            folder, num_images=args.num_test, image_size=args.image_size, seed=args.seed, split="test",
            num_shapes=(2, 3),
        ),
    }
    names = list(args.models or NOTEBOOK_ENTRIES)
    rows = {}
    start = time.perf_counter()
    for name in names:
        epochs = args.epochs_by_kind[_kind(name)]
        result = _train(name, manifests, args, out_root, epochs, preset=args.preset, image_size=args.image_size)
        result["epochs"] = epochs
        rows[name] = result
        m = result["metrics"]
        print(f"  {name:<28} {epochs:>2} epochs  accuracy {m['accuracy']:.3f}  macro-F1 {m['macro_f1']:.3f}  "
              f"({result['train_seconds']:.0f}s)", flush=True)
    seconds = time.perf_counter() - start
    gates = None
    if "gated_classifier" in rows:
        gates = _mean_gates(rows["gated_classifier"]["model_path"], manifests["test"], args.batch_size)

    print()
    print(
        f"Shapes question task at the notebook's budget: {args.num_train} training / {args.num_test} held-out "
        f"images at {args.image_size}x{args.image_size} (training scenes 1-3 shapes, held-out 2-3), preset "
        f"'{args.preset}', batch {args.batch_size}, seed {args.seed}; {seconds:.0f} s for all {len(names)} models."
    )
    print()
    print("| model | epochs | params | held-out accuracy | macro-F1 | over the best baseline | ceiling |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    margins = _margins(rows)
    for name in names:
        r = rows[name]
        ceiling = CEILINGS.get(name, STRUCTURAL_CEILINGS.get(name, {}).get("shapes", 1.0))
        margin = f"{margins[name]:+.3f}" if name in margins else ""
        print(f"| `{name}` | {r['epochs']} | {r['num_params']:,} | {r['metrics']['accuracy']:.3f} | "
              f"{r['metrics']['macro_f1']:.3f} | {margin} | {ceiling:.2f} |")
    print(f"\nChance: {CHANCE:.2f} (9 answers).")
    if gates is not None:
        print(f"GMU mean gate on the held-out questions: image {gates[0]:.3f}, text {gates[1]:.3f}")
    return {"rows": rows, "seconds": seconds, "gates": gates}


def _load_arrays(records, tokenizer, image_size):
    import tensorflow as tf

    images = np.stack([
        np.asarray(tf.image.resize(tf.io.decode_image(tf.io.read_file(r.image), channels=3, expand_animations=False),
                                   (image_size, image_size)))
        for r in records
    ]).astype("float32")
    return [images, np.asarray(tokenizer([r.text for r in records]))], [r.label for r in records]


def plain_keras_model(vocabulary_size, sequence_length, image_size, num_classes):
    """The hand-written baseline: 3 x (Conv2D + MaxPool), Embedding + BiLSTM, concat, 2 Dense."""
    image = keras.Input((image_size, image_size, 3), name="image")
    token_ids = keras.Input((sequence_length,), dtype="int32", name="token_ids")
    x = keras.layers.Rescaling(1.0 / 255)(image)
    for filters in (32, 64, 128):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    t = keras.layers.Embedding(vocabulary_size, 64, mask_zero=True)(token_ids)
    t = keras.layers.Bidirectional(keras.layers.LSTM(64))(t)
    h = keras.layers.Dense(128, activation="relu")(keras.layers.Concatenate()([x, t]))
    model = keras.Model([image, token_ids], keras.layers.Dense(num_classes, activation="softmax")(h))
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def digits_table(args, data_dir, out_root):
    from benchmarks._digits_questions import LABELS, write_digits_questions
    from mmzoo.preprocessing import TextTokenizer

    manifests = write_digits_questions(os.path.join(data_dir, "digits"), seed=args.seed)
    rows = {}
    for name, _ in ENTRIES:
        result = _train(name, manifests, args, os.path.join(out_root, "digits"), args.digits_epochs,
                        preset=args.digits_preset)
        rows[name] = result
        print(f"  digits  {name:<28} accuracy {result['metrics']['accuracy']:.3f}  ({result['train_seconds']:.0f}s)",
              flush=True)
    # The plain Keras model: same data, epochs and batch; its own tokenizer over the training texts.
    image_size = 64
    train_records, test_records = read_manifest(manifests["train"]), read_manifest(manifests["test"])
    tokenizer = TextTokenizer.from_corpus([r.text for r in train_records], mode="word", sequence_length=16)
    x_train, y_train = _load_arrays(train_records, tokenizer, image_size)
    x_test, y_test = _load_arrays(test_records, tokenizer, image_size)
    keras.utils.set_random_seed(args.seed)
    plain = plain_keras_model(tokenizer.vocabulary_size, 16, image_size, len(LABELS))
    start = time.perf_counter()
    plain.fit(x_train, np.array([LABELS.index(y) for y in y_train]), epochs=args.digits_epochs,
              batch_size=args.batch_size, verbose=0)
    predicted = plain.predict(x_test, verbose=0).argmax(-1)
    accuracy = float((predicted == np.array([LABELS.index(y) for y in y_test])).mean())
    rows["plain Keras"] = {"metrics": {"accuracy": accuracy}, "num_params": plain.count_params(),
                           "train_seconds": time.perf_counter() - start}
    print(f"  digits  {'plain Keras':<28} accuracy {accuracy:.3f}", flush=True)

    print()
    scans = len({r.image for r in train_records})
    print(f"Yes/no questions about handwritten digit scans (scikit-learn digits; {len(train_records)} training "
          f"questions on {scans:,} scans, {len(test_records)} held-out scans), {args.digits_epochs} epochs, batch {args.batch_size}, preset "
          f"{args.digits_preset or 'none (each entry default)'}; chance and both baselines' ceiling 0.50.")
    print()
    print("| model | params | held-out accuracy | over the best baseline |")
    print("|---|---:|---:|---:|")
    margins = _margins(rows)
    for name, r in rows.items():
        margin = f"{margins[name]:+.3f}" if name in margins else ""
        print(f"| `{name}` | {r['num_params']:,} | {r['metrics']['accuracy']:.3f} | {margin} |")
    return rows


# ------------------------------------------------------------------ GMU gates
def _noise_image_manifest(folder, num_images, image_size, seed, split):
    """Colours task where the image is noise and the text (a caption) is informative."""
    import tensorflow as tf

    from mmzoo.datasets.shapes import iter_shapes_scenes

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
    n_train, n_test = min(args.num_train, 2000), min(args.num_test, 300)
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
        result = _train("gated_classifier", manifests, args, os.path.join(out_root, label.split()[0]), args.gate_epochs,
                        preset=args.preset, image_size=args.image_size)
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
        names = args.models or NOTEBOOK_ENTRIES
        print(f"Part 1: {len(names)} classifier entries on the shapes question task ...", flush=True)
        shapes = fusion_table(args, data_dir, out_root)
        gates = gate_experiment(args, data_dir, out_root) if not args.skip_gates else {}
        digits = None
        if not args.skip_digits:
            print("\nPart 3: yes/no questions about handwritten digit scans ...", flush=True)
            digits = digits_table(args, data_dir, out_root)
        print(f"\n(total {time.perf_counter() - start:.0f}s)")
    print(json.dumps(json_report(args, shapes, gates, digits, argv)))


def json_report(args, shapes, gates, digits=None, argv=None):
    """The benchmark contract's JSON last line (rows for benchmarks/run.py)."""
    rows = []
    fusion_rows = shapes["rows"]
    margins = _margins(fusion_rows)
    budget = f"{args.num_train} images, preset {args.preset}"
    for name, result in fusion_rows.items():
        m = result["metrics"]
        ceiling = CEILINGS.get(name, STRUCTURAL_CEILINGS.get(name, {}).get("shapes", 1.0))
        row = {
            "figure": f"shapes questions: `{name}` held-out accuracy ({result['epochs']} epochs, {budget}; "
                      f"ceiling {ceiling:.2f})",
            "goal": None, "value": f"{m['accuracy']:.3f}", "met": None,
        }
        if name in margins and name not in STRUCTURAL_CEILINGS:
            row.update(goal=f">= best baseline + {MARGIN_GOAL}", value=f"{m['accuracy']:.3f} ({margins[name]:+.3f})",
                       met=bool(margins[name] >= MARGIN_GOAL))
        rows.append(row)
    fused = [n for n in fusion_rows if n not in UNIMODAL]
    if fused:
        best = max(fused, key=lambda n: fusion_rows[n]["metrics"]["accuracy"])
        accuracy = fusion_rows[best]["metrics"]["accuracy"]
        rows.append({"figure": "shapes questions: best fused held-out accuracy", "goal": f">= {BEST_FUSED_GOAL}",
                     "value": f"{accuracy:.3f} ({best})", "met": bool(accuracy >= BEST_FUSED_GOAL)})
    if args.models is None:
        rows.append({"figure": "shapes questions: wall time of the notebook's five trainings",
                     "goal": f"<= {NOTEBOOK_SECONDS_GOAL} s", "value": f"{shapes['seconds']:.0f} s",
                     "met": bool(shapes["seconds"] <= NOTEBOOK_SECONDS_GOAL)})
    if shapes["gates"] is not None:
        g = shapes["gates"]
        rows.append({"figure": "shapes questions: GMU mean gate image / text (held-out)",
                     "goal": "each in [0.1, 0.9]", "value": f"{g[0]:.3f} / {g[1]:.3f}",
                     "met": bool(all(0.1 <= v <= 0.9 for v in g))})
    for label, result in gates.items():
        informative = 0 if label.startswith("text is noise") else 1  # gate index: 0 image, 1 text
        rows.append({
            "figure": f"GMU gate, {label}: mean gate image / text",
            "goal": f"gate on the {'image' if informative == 0 else 'text'} > 0.5",
            "value": f"{result['gates'][0]:.3f} / {result['gates'][1]:.3f} (micro-F1 {result['micro_f1']:.3f})",
            "met": bool(result["gates"][informative] > 0.5),
        })
    if digits:
        digit_margins = _margins(digits)
        for name, result in digits.items():
            setting = "same data and epochs" if name == "plain Keras" else f"preset {args.digits_preset or 'default'}"
            row = {"figure": f"digit scans yes/no: `{name}` held-out accuracy ({args.digits_epochs} epochs, "
                             f"{setting}; chance 0.50)",
                   "goal": None, "value": f"{result['metrics']['accuracy']:.3f}", "met": None}
            if name in digit_margins and name not in STRUCTURAL_CEILINGS and name != "plain Keras":
                plain = digits["plain Keras"]["metrics"]["accuracy"]
                row.update(goal=f">= best baseline + {MARGIN_GOAL}, and the plain Keras model",
                           value=f"{result['metrics']['accuracy']:.3f} ({digit_margins[name]:+.3f})",
                           met=bool(digit_margins[name] >= MARGIN_GOAL and result["metrics"]["accuracy"] >= plain))
            rows.append(row)
    return contract_report("fusion_quality", rows, argv)


if __name__ == "__main__":
    main()
