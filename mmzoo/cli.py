"""The ``mmzoo`` command: list | demo | train | evaluate | export | predict | serve-config | data."""

from __future__ import annotations

import argparse
import json
import os
import sys


def _quiet_tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def _cmd_list(args):
    from mmzoo.registry import build, get_entry, list_models

    names = list_models()
    if not names:
        print("No zoo entries registered.")
        return 0
    rows = []
    for name in names:
        entry = get_entry(name)
        params = ""
        if not args.no_params:
            import keras

            params = f"{build(name).count_params():,}"
            keras.backend.clear_session()
        rows.append((name, entry.task, params, entry.description))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    w2 = max(len("params"), max(len(r[2]) for r in rows))
    print(f"{'name':<{w0}}  {'task':<{w1}}  {'params':>{w2}}  description")
    for name, task, params, desc in rows:
        print(f"{name:<{w0}}  {task:<{w1}}  {params:>{w2}}  {desc}")
    return 0


def _cmd_train(args):
    from mmzoo.training import TrainingDiverged, cli_options, train

    options = cli_options(args)  # command line > --config file > train()'s defaults
    try:
        result = train(**options)
    except TrainingDiverged as e:
        print(f"mmzoo train: {e}", file=sys.stderr)
        return 3
    print(json.dumps(result))
    return 0


# mmzoo.metrics.retrieval.RERANK_FUSIONS, spelled out: importing it here would load keras for
# every `mmzoo --help` (tests/test_cli_matching.py checks that the two agree). The first is
# the library's default fusion.
RERANK_FUSION_CHOICES = ("log_odds", "log_prob")
RERANK_FUSION_DEFAULT = RERANK_FUSION_CHOICES[0]


def _load(path):
    import keras

    import mmzoo.models  # noqa: F401  (registers the classes for safe_mode loading)

    if not os.path.exists(path):
        raise FileNotFoundError(f"No model file at {path!r}.")
    return keras.saving.load_model(path, safe_mode=True)


def _cmd_evaluate(args):
    from mmzoo.data import read_manifest
    from mmzoo.metrics import evaluate_model

    # Check the flags before loading anything: a fusion without a weight would be
    # silently ignored (the ITM alone ranks the top-k), so it is refused.
    if args.rerank_weight is None and args.rerank_fusion is not None:
        raise ValueError(f"--rerank-fusion {args.rerank_fusion} chooses how --rerank-weight W fuses the ITM "
                         "with the dual encoder's logit; give --rerank-weight too (without it the ITM alone "
                         "ranks the top-k).")
    if args.rerank_weight is not None and not args.rerank_model:
        raise ValueError("--rerank-weight fuses the --rerank-model's log-odds with the dual encoder's logit; "
                         "give --rerank-model too.")
    if args.rerank_threshold is not None and (args.rerank_weight is not None or not args.rerank_model):
        raise ValueError("--rerank-threshold gates the dual encoder's top-k by the --rerank-model's match "
                         "probability: give --rerank-model, and not --rerank-weight (a score fusion) with it.")
    if args.querybank_beta is not None and not args.querybank:
        raise ValueError("--querybank-beta needs --querybank MANIFEST (records not in --data).")
    model = _load(args.model)
    records = read_manifest(args.data, skip_bad=args.skip_bad)
    options = {}
    if args.rerank_model:
        options["rerank_model"] = _load(args.rerank_model)
        options["rerank_k"] = args.rerank_k
        if args.rerank_weight is not None:
            options["rerank_weight"] = args.rerank_weight
            options["rerank_fusion"] = args.rerank_fusion or RERANK_FUSION_DEFAULT
        if args.rerank_threshold is not None:
            options["rerank_threshold"] = args.rerank_threshold
    if args.querybank:
        options["querybank"] = read_manifest(args.querybank, skip_bad=args.skip_bad)
        if args.querybank_beta is not None:
            options["querybank_beta"] = args.querybank_beta
    if args.method:
        options["method"] = args.method
    metrics = evaluate_model(model, records, batch_size=args.batch_size, **options)
    print(json.dumps(metrics))
    return 0


def _parse_batch_size(value):
    if value in ("auto", None):
        return "auto"
    if value.lower() in ("none", "dynamic"):
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"--batch-size must be 'auto', 'none' or an int. Received: {value!r}") from None


def _cmd_export(args):
    from mmzoo.export import export_saved_model

    stem = os.path.splitext(os.path.basename(args.model))[0]
    if args.format == "tflite" and args.tower:
        raise ValueError(
            "--tower exports a reusable SavedModel; LiteRT export covers the whole model's "
            f"classification/embedding signatures. Received: --format tflite --tower {args.tower}"
        )
    model = _load(args.model)
    if args.format == "tflite":
        from mmzoo.export.tflite import export_tflite

        path = args.output or os.path.join(args.base_dir, f"{args.name or stem}.tflite")
        info = export_tflite(
            model, path, batch_size=_parse_batch_size(args.batch_size), overwrite=args.overwrite
        )
        print(json.dumps({"path": os.path.abspath(path), "ops": info["ops"], "batch_size": info["batch_size"],
                          "signatures": sorted(info["signatures"])}))
        return 0
    if args.tower:
        from mmzoo.export.tower import export_tower

        path = args.output or os.path.join(args.base_dir, args.name or f"{stem}_{args.tower}_tower")
        print(export_tower(model, path, tower=args.tower, overwrite=args.overwrite))
        return 0
    base_dir = args.output or (os.path.join(args.base_dir, args.name) if args.name else args.base_dir)
    kwargs = {}
    if args.beam_width is not None:
        kwargs["beam_width"] = args.beam_width
    version_dir = export_saved_model(model, base_dir, version=args.version, overwrite=args.overwrite, **kwargs)
    print(version_dir)
    return 0


def _cmd_predict(args):
    from mmzoo.export import run_saved_model

    outputs = run_saved_model(
        args.export_dir, signature=args.signature, image_paths=args.image or (), texts=args.text or ()
    )
    print(json.dumps(outputs))
    return 0


def _cmd_serve_config(args):
    from mmzoo.export import write_models_config

    print(write_models_config(args.base_path))
    return 0


def _cmd_data(args):
    from mmzoo.data.shapes import generate_shapes_dataset

    path = generate_shapes_dataset(args.out, num_images=args.num_images, image_size=args.image_size, seed=args.seed)
    print(path)
    return 0


def _cmd_demo(args):
    from mmzoo.demo import run_demo

    run_demo(out_dir=args.out, quick=args.quick, saved_models_dir=args.saved_models)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from mmzoo.version import __version__

    parser = argparse.ArgumentParser(prog="mmzoo", description="Multimodal (image + text) Keras model zoo.")
    parser.add_argument("--version", action="version", version=f"mmzoo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list the registered zoo entries")
    p.add_argument("--no-params", action="store_true", help="skip building each entry to count parameters")
    p.set_defaults(fn=_cmd_list)

    p = sub.add_parser("demo", help="the whole path on the built-in data: train, export, reload, predict")
    p.add_argument("--quick", action="store_true", help="a run of a minute or two")
    p.add_argument("--out", default=None, help="where data, runs and exports go (default: data and runs in mmzoo_out/, exports in saved_models/)")
    p.add_argument("--saved-models", default=None, help="export base (default: saved_models/, or OUT/saved_models with --out)")
    p.set_defaults(fn=_cmd_demo)

    p = sub.add_parser(
        "train",
        help="train a zoo entry on a manifest",
        description="Train a zoo entry. Flags given here override the --config file; every run saves "
        "OUT/run_config.json, so `mmzoo train --config OUT/run_config.json` repeats it.",
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument("name", nargs="?", help="zoo entry (mmzoo list)")
    p.add_argument("--config", help="run config (.json, or .yaml with PyYAML) holding any of these flags and `set`")
    p.add_argument("--data", help="training manifest (.jsonl/.csv, COCO .json, Flickr8k captions, .tfrecord)")
    p.add_argument("--val-data")
    p.add_argument("--epochs", type=int, help="default 5")
    p.add_argument("--batch-size", type=int, help="the global batch, split over the replicas (default 32)")
    p.add_argument("--preset")
    p.add_argument("--out", help="output directory (default runs/model)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="builder override, repeatable")
    p.add_argument("--learning-rate", type=float, help="default: the zoo entry's")
    p.add_argument("--lr-schedule", choices=["constant", "cosine"], help="default constant")
    p.add_argument("--warmup-steps", type=int, help="linear warmup steps (default 0)")
    p.add_argument("--early-stopping", type=int, metavar="PATIENCE", help="stop after PATIENCE epochs without improvement")
    p.add_argument("--seed", type=int, help="default 0")
    p.add_argument("--deterministic", action="store_true", help="deterministic TF ops (repeatable runs and resumption)")
    p.add_argument("--strategy", choices=["default", "mirrored", "multi_worker", "tpu"],
                   help="tf.distribute strategy; multi_worker reads TF_CONFIG")
    p.add_argument("--tpu", help="TPU name or address for --strategy tpu")
    p.add_argument("--cpu-devices", type=int, metavar="N", help="split the CPU into N logical devices (mirrored on CPU)")
    p.add_argument("--mixed-precision", choices=["mixed_float16", "mixed_bfloat16"])
    p.add_argument("--jit-compile", action=argparse.BooleanOptionalAction, help="XLA-compile the train step")
    p.add_argument("--steps-per-execution", type=int, metavar="N", help="train steps per tf.function call")
    p.add_argument("--skip-bad", action="store_true", help="skip bad rows/images and report them")
    p.add_argument("--cache", choices=["auto", "memory", "none"],
                   help="keep decoded training images in memory (auto: when they fit in 2 GiB; default)")
    p.add_argument("--quiet", action="store_true", help="one line per epoch")
    p.set_defaults(fn=_cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a .keras model on a manifest; prints JSON")
    p.add_argument("model")
    p.add_argument("--data", required=True)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--skip-bad", action="store_true")
    p.add_argument("--rerank-model", help="matching: an itm_matcher .keras to re-rank the top-k")
    p.add_argument("--rerank-k", type=int, default=10)
    p.add_argument("--rerank-weight", type=float,
                   help="matching: re-rank by dual logit + W * ITM log-odds, or W * log p with "
                        "--rerank-fusion log_prob (default: the ITM alone)")
    p.add_argument("--rerank-fusion", choices=RERANK_FUSION_CHOICES, default=None,
                   help="matching, with --rerank-weight: fuse the ITM's log-odds (the default), or its "
                        "log-probability (a soft truth gate that keeps the dual encoder's order among "
                        "accepted captions)")
    p.add_argument("--rerank-threshold", type=float,
                   help="matching: a truth gate instead of a fusion: the top-k captions (images) the ITM scores "
                        "at least this probability keep the dual encoder's order, ahead of the others")
    p.add_argument("--querybank", metavar="MANIFEST",
                   help="matching: querybank normalisation over these records' images and captions "
                        "(training records, not --data)")
    p.add_argument("--querybank-beta", type=float, help="matching: QB-Norm temperature (default: the logit scale)")
    p.add_argument("--method", choices=["greedy", "beam"], help="captioning: decoding method")
    p.set_defaults(fn=_cmd_evaluate)

    p = sub.add_parser("export", help="export a .keras model: TF Serving SavedModel, one tower, or LiteRT")
    p.add_argument("model")
    p.add_argument("--base-dir", default="saved_models")
    p.add_argument("--name", help="model name: exports to BASE_DIR/NAME/<version>")
    p.add_argument("--version", type=int)
    p.add_argument("--overwrite", action="store_true", help="replace an existing version")
    p.add_argument("--beam-width", type=int, help="captioning: beam width of the beam_search signature")
    p.add_argument("--format", choices=["saved_model", "tflite"], default="saved_model",
                   help="saved_model (TF Serving) or tflite (LiteRT: classification/embedding signatures "
                   "over preprocessed inputs; writes BASE_DIR/NAME.tflite + .json)")
    p.add_argument("--tower", choices=["image", "text"],
                   help="export only this tower as a reusable hub-style SavedModel (BASE_DIR/NAME)")
    p.add_argument("--output", help="exact output path (overrides BASE_DIR/NAME)")
    p.add_argument("--batch-size", default="auto", help="tflite: auto | none (dynamic) | N")
    p.set_defaults(fn=_cmd_export)

    p = sub.add_parser("predict", help="run an exported SavedModel on image files and texts; prints JSON")
    p.add_argument("export_dir")
    p.add_argument("--signature", default="serving_default")
    p.add_argument("--image", nargs="+")
    p.add_argument("--text", nargs="+")
    p.set_defaults(fn=_cmd_predict)

    p = sub.add_parser("serve-config", help="write models.config for every model under a base path")
    p.add_argument("base_path", nargs="?", default="saved_models")
    p.set_defaults(fn=_cmd_serve_config)

    p = sub.add_parser("data", help="generate the built-in shapes dataset")
    p.add_argument("--out", required=True)
    p.add_argument("--num-images", type=int, default=1000)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=_cmd_data)
    return parser


def main(argv=None) -> int:
    _quiet_tf()
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except (ValueError, FileNotFoundError, TypeError) as e:
        print(f"mmzoo {args.command}: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # TensorFlow errors carry a message worth showing whole
        import tensorflow as tf

        if isinstance(e, tf.errors.OpError):
            print(f"mmzoo {args.command}: error: {e.message}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
