"""The ``mmzoo`` command: list | demo | train | evaluate | export | predict | serve-config | data."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

from mmzoo.metrics.retrieval import RERANK_FUSIONS

# TensorFlow's C++ runtime writes these to stderr while its shared libraries
# load, before TF_CPP_MIN_LOG_LEVEL applies (absl logs everything until
# absl::InitializeLog runs). `_import_tensorflow_quietly` drops exactly these
# lines and passes anything else written during the import on to stderr.
_LOAD_TIME_NOISE = re.compile(
    r"^(?:WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|I\d{4} [\d:.]+\s+\d+ (?:port\.cc:\d+\] oneDNN custom operations are on\. "
    r"|cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine, GPU will not be used\.))"
)


def _quiet_tf():
    """Environment for a quiet TensorFlow, set before it is imported; a user's own setting wins.

    ``TF_CPP_MIN_LOG_LEVEL=3`` keeps TensorFlow's C++ log (``E0000 ... failed call
    to cuInit`` on a machine without a GPU, oneDNN notes) off the terminal; errors
    that matter reach the command as Python exceptions. ``TF_CPP_MIN_LOG_LEVEL=0``
    shows the whole log again.
    """
    user_set = "TF_CPP_MIN_LOG_LEVEL" in os.environ
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    return user_set


def _import_tensorflow_quietly():
    """``import tensorflow`` with its load-time log lines (``_LOAD_TIME_NOISE``) dropped.

    Those lines are written by the C++ runtime straight to file descriptor 2,
    so stderr is captured around the import (``captured_native_stderr``), then
    replayed to stderr without them.
    """
    if "tensorflow" in sys.modules:
        return
    from mmzoo.native_stderr import captured_native_stderr

    captured = []
    try:
        with captured_native_stderr() as captured:
            import tensorflow  # noqa: F401
    finally:
        text = "".join(captured)
        kept = [line for line in text.splitlines(keepends=True) if not _LOAD_TIME_NOISE.match(line)]
        if kept:
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


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

            # Params depend on the data (classes, vocabulary): counted for 2 classes and the
            # default character tokenizer, as the header says.
            labels = {"num_classes": 2} if entry.task == "classification" else {}
            params = f"{build(name, **labels).count_params():,}"
            # Resets Keras's names; Keras's default gc.collect() here took 2 s of `mmzoo list`'s 7.5 s.
            keras.backend.clear_session(free_memory=False)
        rows.append((name, entry.task, params, entry.description))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    w2 = max(len("params"), max(len(r[2]) for r in rows))
    print(f"{'name':<{w0}}  {'task':<{w1}}  {'params':>{w2}}  description")
    for name, task, params, desc in rows:
        print(f"{name:<{w0}}  {task:<{w1}}  {params:>{w2}}  {desc}")
    if not args.no_params:
        print("params: the 'default' preset, 2 classes, the default character tokenizer (yours will differ)")
    return 0


def _cmd_train(args):
    from mmzoo.training import TrainingDiverged, cli_options, format_result, train

    options = cli_options(args)  # command line > --config file > train()'s defaults
    options["overwrite"] = bool(getattr(args, "overwrite", False))
    for key, flag in (("data", "--data"), ("val_data", "--val-data")):
        if options.get(key) and not os.path.exists(options[key]):
            raise FileNotFoundError(f"No manifest at {options[key]!r} ({flag}).")
    if "verbose" not in options and not sys.stdout.isatty():
        options["verbose"] = 2  # a log file gets one line per epoch, not progress-bar redraws
    try:
        result = train(**options)
    except TrainingDiverged as e:
        print(f"mmzoo train: {e}", file=sys.stderr)
        return 3
    if getattr(args, "json", False):
        print(json.dumps(result))
    else:
        print(format_result(result, data=options.get("data"), columns=options.get("columns")))
    return 0


# The library's fusions (mmzoo.metrics.retrieval needs only numpy, so `mmzoo --help` still
# loads no TensorFlow); the first is the library's default.
RERANK_FUSION_CHOICES = RERANK_FUSIONS
RERANK_FUSION_DEFAULT = RERANK_FUSION_CHOICES[0]


def _load(path):
    import keras

    import mmzoo.models  # noqa: F401  (registers the classes for safe_mode loading)

    if not os.path.exists(path):
        raise FileNotFoundError(f"No model file at {path!r}.")
    # Nothing trains here: without the optimizer (compile=False) Keras neither
    # builds one nor warns that it skips the saved optimizer's variables.
    return keras.saving.load_model(path, safe_mode=True, compile=False)


def _cmd_evaluate(args):
    from mmzoo.data import read_manifest
    from mmzoo.evaluation import evaluate_model

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
    records = read_manifest(args.data, skip_bad=args.skip_bad, columns=args.columns)
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
    if not args.json:
        from mmzoo.training.reporting import format_evaluation

        print(format_evaluation(metrics, model, records, model_path=args.model, data=args.data))
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


def export_name(model_path) -> str:
    """The name an export of ``model_path`` gets without ``--name``: the run folder
    for ``runs/NAME/model.keras`` and ``runs/NAME/checkpoints/epoch_NNN.keras``,
    else the file's stem (``clf.keras`` -> ``clf``)."""
    path = os.path.abspath(os.fspath(model_path))
    folder, filename = os.path.split(path)
    stem = os.path.splitext(filename)[0]
    if os.path.basename(folder) == "checkpoints":
        folder = os.path.dirname(folder)
    elif stem != "model":
        return stem
    return os.path.basename(folder) or stem


def _refuse_existing(path, what):
    raise FileExistsError(f"{path} already exists ({what}). Pass --overwrite to replace it, or --output/--name "
                          "for another path.")


def _cmd_export(args):
    name = args.name or export_name(args.model)
    if (args.format == "tflite" or args.tower) and (args.input_type != "raw" or args.image_feature or args.text_feature):
        raise ValueError(
            "--input-type/--image-feature/--text-feature apply to the TF Serving SavedModel export. "
            f"Received: --input-type {args.input_type} with " + ("--tower" if args.tower else "--format tflite")
        )
    if args.format == "tflite" and args.tower:
        raise ValueError(
            "--tower exports a reusable SavedModel; LiteRT export covers the whole model's "
            f"classification/embedding signatures. Received: --format tflite --tower {args.tower}"
        )
    if not os.path.exists(args.model):
        raise FileNotFoundError(f"No model file at {args.model!r}.")
    # Refuse an existing target before loading the model (seconds) and exporting (minutes).
    if args.format == "tflite":
        path = args.output or os.path.join(args.base_dir, f"{name}.tflite")
        if os.path.exists(path) and not args.overwrite:
            _refuse_existing(path, "a LiteRT export")
    elif args.tower:
        path = args.output or os.path.join(args.base_dir, args.name or f"{name}_{args.tower}_tower")
        if os.path.exists(path) and not args.overwrite:
            _refuse_existing(path, f"a {args.tower} tower export")
    else:
        base_dir = args.output or os.path.join(args.base_dir, name)
        if args.version is not None and os.path.exists(os.path.join(base_dir, str(args.version))) \
                and not args.overwrite:
            raise FileExistsError(
                f"Version {args.version} already exists under {base_dir}. Pass --overwrite to replace it, "
                "or leave out --version to write the next free version."
            )
    if _QUIET_TENSORFLOW:  # TensorFlow after the checks above, so that they answer at once
        _import_tensorflow_quietly()
    from mmzoo.export import export_saved_model

    model = _load(args.model)
    if args.format == "tflite":
        from mmzoo.export.tflite import export_tflite

        info = export_tflite(
            model, path, batch_size=_parse_batch_size(args.batch_size), overwrite=args.overwrite
        )
        print(json.dumps({"path": os.path.abspath(path), "ops": info["ops"], "batch_size": info["batch_size"],
                          "signatures": sorted(info["signatures"])}))
        return 0
    if args.tower:
        from mmzoo.export.tower import export_tower

        print(export_tower(model, path, tower=args.tower, overwrite=args.overwrite))
        return 0
    kwargs = {"input_type": args.input_type}
    kwargs.update({key: getattr(args, key) for key in ("max_image_pixels", "max_request_pixels") if hasattr(args, key)})
    if args.beam_width is not None:
        kwargs["beam_width"] = args.beam_width
    feature_keys = {k: v for k, v in (("image_bytes", args.image_feature), ("text", args.text_feature)) if v}
    if feature_keys:
        kwargs["feature_keys"] = feature_keys
    version_dir = export_saved_model(model, base_dir, version=args.version, overwrite=args.overwrite, **kwargs)
    print(version_dir)
    return 0


def _cmd_predict(args):
    from mmzoo.export import run_saved_model

    if args.data:
        if args.image or args.text:
            raise ValueError("--data reads the images and texts from a manifest: give it without --image and --text.")
        return _predict_manifest(args)
    if args.out or args.overwrite:
        raise ValueError("--out (and --overwrite) write one line per row of --data MANIFEST; without --data the "
                         "JSON goes to stdout.")
    outputs = run_saved_model(
        args.export_dir, signature=args.signature, image_paths=args.image or (), texts=args.text or (),
        batch_size=args.batch_size,
    )
    print(json.dumps(outputs))
    return 0


def _predict_manifest(args):
    """``mmzoo predict EXPORT --data MANIFEST``: a JSON line per row, to stdout or written whole to --out."""
    from mmzoo.data import read_manifest
    from mmzoo.export.predict import run_saved_model_on_records
    from mmzoo.files import write_then_rename

    if args.out and os.path.exists(args.out) and not args.overwrite:
        raise FileExistsError(f"{args.out} exists.")
    records = read_manifest(args.data, skip_bad=args.skip_bad, columns=args.columns)
    rows = run_saved_model_on_records(args.export_dir, records, signature=args.signature, batch_size=args.batch_size)
    if not args.out:
        for row in rows:
            print(json.dumps(row), flush=True)
        return 0
    written = 0

    def write(tmp):
        nonlocal written
        with open(tmp, "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
                written += 1

    write_then_rename(args.out, write)  # a failing row leaves no --out file, nor an old one half replaced
    print(f"wrote {written} predictions to {args.out}")
    return 0


def _cmd_serve_config(args):
    from mmzoo.export.serving_config import server_commands, write_batching_config, write_models_config

    model_base_path = None if args.local else "/models"
    print(write_models_config(args.base_path, model_base_path=model_base_path))
    batching = None
    if args.batching:
        path = write_batching_config(args.base_path, num_batch_threads=args.num_batch_threads)
        print(path)
        batching = os.path.basename(path)
    commands = server_commands(args.base_path, model_base_path, batching=batching)
    where = "this machine's paths" if args.local else "the models at /models; --local for this machine's paths"
    print(f"# TF Serving in Docker:\n{commands['docker']}")
    print(f"# tensorflow_model_server ({where}):\n{commands['tensorflow_model_server']}")
    return 0


def _cmd_data(args):
    from mmzoo.datasets.shapes import generate_shapes_dataset

    path = generate_shapes_dataset(args.out, num_images=args.num_images, image_size=args.image_size, seed=args.seed)
    print(path)
    return 0


def _cmd_demo(args):
    from mmzoo.demo import run_demo

    run_demo(out_dir=args.out, quick=args.quick, saved_models_dir=args.saved_models)
    return 0


# Every zoo entry's presets (tests/test_cli.py checks this against the registry;
# importing the registry here would load Keras for every `mmzoo --help`).
PRESET_HELP = (
    "builder preset: tiny | small | default (every entry); classic (concat_classifier, gated_classifier, "
    "late_fusion_classifier); shapes (dual_encoder, itm_matcher, lstm_captioner, transformer_captioner: sized "
    "for the built-in shapes data). Default: the entry's 'default'"
)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each default (``%(default)s``), except where there is none to show."""

    def _get_help_string(self, action):
        if action.default in (None, False, argparse.SUPPRESS) or "default" in (action.help or "").lower():
            return action.help
        return super()._get_help_string(action)


def _command(subparsers, name, fn, **kwargs) -> argparse.ArgumentParser:
    """A subcommand ``name`` that runs ``fn(args)``, its help showing the defaults (``_HelpFormatter``)."""
    parser = subparsers.add_parser(name, formatter_class=_HelpFormatter, **kwargs)
    parser.set_defaults(fn=fn)
    return parser


def _add_list_parser(subparsers):
    p = _command(subparsers, "list", _cmd_list, help="list the registered zoo entries")
    p.add_argument("--no-params", action="store_true", help="skip building each entry to count parameters")


def _add_demo_parser(subparsers):
    p = _command(subparsers, "demo", _cmd_demo,
                 help="the whole path on the built-in data: train, export, reload, predict")
    p.add_argument("--quick", action="store_true",
                   help="smaller data and fewer epochs: a smoke run of the whole path (about 3 minutes on 2 idle "
                        "cores, 9 for the full run; the fused classifier needs the full run to learn)")
    p.add_argument("--out", default=None,
                   help="where data, runs and exports go (default: data and runs in mmzoo_out/, exports in "
                        "saved_models/)")
    p.add_argument("--saved-models", default=None,
                   help="export base (default: saved_models/, or OUT/saved_models with --out)")


def _add_train_parser(subparsers):
    p = _command(
        subparsers,
        "train",
        _cmd_train,
        help="train a zoo entry on a manifest",
        description="Train a zoo entry. Flags given here override the --config file; every run saves "
        "OUT/run_config.json, so `mmzoo train --config OUT/run_config.json --out NEW` repeats it. "
        "A run killed midway resumes when started again with the same --out; a finished run in --out "
        "is kept unless --overwrite.",
        argument_default=argparse.SUPPRESS,
    )
    _add_train_run_args(p)
    _add_train_optimizer_args(p)
    _add_train_device_args(p)
    _add_train_data_and_output_args(p)
    _add_train_tower_args(p)


_TOWER_FLAGS = (
    ("--text-preset", dict(metavar="PRESET", help="keras-hub preset (handle or directory) of a pretrained BERT-family "
                           "text tower: text_tower=keras_hub, frozen unless --train-towers (default: none)")),
    ("--image-preset", dict(metavar="PRESET", help="keras-hub preset of a pretrained ViT/CLIP/SigLIP/DINOv2 image "
                            "tower: image_tower=keras_hub (default: none)")),
    ("--train-towers", dict(action="store_true", help="fine-tune the pretrained towers from the start (default: "
                            "frozen)")),
    ("--unfreeze-after", dict(type=int, metavar="K", help="from epoch K (0-based) on, fine-tune the pretrained "
                              "towers' top layers (default: never)")),
    ("--unfreeze-layers", dict(type=int, metavar="N", help="with --unfreeze-after: how many top transformer layers "
                               "(default: all)")),
    ("--unfreeze-lr-factor", dict(type=float, metavar="F", help="with --unfreeze-after: multiply the learning rate "
                                  "by F then (default 0.1)")),
    ("--lora-rank", dict(type=int, metavar="R", help="train rank-R LoRA adapters on the pretrained towers' "
                         "attention (default: off)")),
)


def _add_train_tower_args(p):
    """Pretrained keras-hub towers: which, and how they are fine-tuned."""
    for flag, options in _TOWER_FLAGS:
        p.add_argument(flag, **options)


def _add_train_run_args(p):
    """What to train, on what, for how long, and where the run goes."""
    p.add_argument("name", nargs="?", help="zoo entry (see `mmzoo list`); required here or in --config")
    p.add_argument("--config", help="run config (.json, or .yaml with PyYAML) holding any of these flags and `set` "
                                    "(default: none)")
    p.add_argument("--data", help="training manifest (.jsonl/.csv, COCO .json, Flickr8k captions, .tfrecord); "
                                  "required here or in --config")
    p.add_argument("--val-data", help="validation manifest: the metrics are computed on it (default: none, the "
                                      "metrics are computed on the training data)")
    p.add_argument("--columns", metavar="NAME=COLUMN,...",
                   help="your manifests' names for mmzoo's columns image, text, label, caption, e.g. "
                        "--columns image=filepath,text=title,label=category (default: those names)")
    p.add_argument("--epochs", type=int, help="epochs to train (default 5)")
    p.add_argument("--batch-size", type=int, help="the global batch, split over the replicas (default 32)")
    p.add_argument("--preset", help=PRESET_HELP)
    p.add_argument("--out", help="run directory (default runs/model)")
    p.add_argument("--overwrite", action="store_true",
                   help="train again from scratch when --out holds a run, finished or not (default: refuse a "
                        "finished run, resume an unfinished one)")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep OUT/checkpoints/epoch_NNN.keras for every epoch (default: only while training, "
                        "the latest one, removed when the run finishes)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="builder override, repeatable, e.g. --set dropout=0.2 --set image_size=[32,32] "
                        "(default: none)")


def _add_train_optimizer_args(p):
    """Learning rate, its schedule, early stopping and seeding."""
    p.add_argument("--learning-rate", type=float, help="base learning rate (default: the zoo entry's)")
    p.add_argument("--lr-schedule", choices=["constant", "cosine"], help="learning-rate schedule (default constant)")
    p.add_argument("--warmup-steps", type=int, help="linear warmup steps (default 0)")
    p.add_argument("--early-stopping", type=int, metavar="PATIENCE",
                   help="stop after PATIENCE epochs without improvement (default: off)")
    p.add_argument("--seed", type=int, help="seeds the weights, the data order and dropout (default 0)")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic TF ops: repeatable runs and resumption (default: off)")


def _add_train_device_args(p):
    """Distribution strategy, devices, precision and compilation."""
    p.add_argument("--strategy", choices=["default", "mirrored", "multi_worker", "tpu"],
                   help="tf.distribute strategy; multi_worker reads TF_CONFIG (default: default)")
    p.add_argument("--tpu", help="TPU name or address for --strategy tpu (default: none)")
    p.add_argument("--cpu-devices", type=int, metavar="N",
                   help="split the CPU into N logical devices, for mirrored training on CPU (default: off)")
    p.add_argument("--mixed-precision", choices=["mixed_float16", "mixed_bfloat16"],
                   help="compute dtype policy (default: float32)")
    p.add_argument("--jit-compile", action=argparse.BooleanOptionalAction,
                   help="XLA-compile the train step (default: Keras' choice)")
    p.add_argument("--steps-per-execution", type=int, metavar="N", help="train steps per tf.function call (default 1)")


def _add_train_data_and_output_args(p):
    """Bad records, image caching, and what the command prints."""
    p.add_argument("--skip-bad", action="store_true",
                   help="skip bad rows and images and report them (default: stop at the first)")
    p.add_argument("--cache", choices=["auto", "memory", "none"],
                   help="keep decoded training images in memory (auto: when they fit in 2 GiB; default auto)")
    p.add_argument("--quiet", action="store_true", help="one line per epoch, no progress bar (default: a progress "
                                                        "bar on a terminal, one line per epoch otherwise)")
    p.add_argument("--json", action="store_true",
                   help="print the result as one JSON line at the end instead of the summary (default: summary)")


COLUMNS_HELP = ("the manifest's names for mmzoo's columns, e.g. image=filepath,text=title (default: image, text, "
                "label, caption)")


def _add_evaluate_parser(subparsers):
    p = _command(subparsers, "evaluate", _cmd_evaluate,
                 help="evaluate a .keras model on a manifest: each metric beside its chance level, "
                      "then the metrics as JSON (the last line)")
    p.add_argument("model", help="a .keras file (e.g. runs/NAME/model.keras)")
    p.add_argument("--data", required=True, help="manifest to evaluate on (required)")
    p.add_argument("--columns", metavar="NAME=COLUMN,...", help=COLUMNS_HELP)
    p.add_argument("--batch-size", type=int, default=64, help="evaluation batch")
    p.add_argument("--skip-bad", action="store_true", help="skip bad rows and images and report them")
    _add_evaluate_matching_args(p)
    p.add_argument("--method", choices=["greedy", "beam"], help="captioning: decoding method (default greedy)")
    p.add_argument("--json", action="store_true",
                   help="print only the JSON line (default: the summary, then the JSON line)")


def _add_evaluate_matching_args(p):
    """Matching: re-ranking by an ITM model and querybank normalisation."""
    p.add_argument("--rerank-model", help="matching: an itm_matcher .keras to re-rank the top-k (default: none)")
    p.add_argument("--rerank-k", type=int, default=10, help="matching, with --rerank-model: how many to re-rank")
    p.add_argument("--rerank-weight", type=float,
                   help="matching: re-rank by dual logit + W * ITM log-odds, or W * log p with "
                        "--rerank-fusion log_prob (default: the ITM alone)")
    p.add_argument("--rerank-fusion", choices=RERANK_FUSION_CHOICES, default=None,
                   help="matching, with --rerank-weight: fuse the ITM's log-odds (the default), or its "
                        "log-probability (a soft truth gate that keeps the dual encoder's order among "
                        "accepted captions)")
    p.add_argument("--rerank-threshold", type=float,
                   help="matching: a truth gate instead of a fusion: the top-k captions (images) the ITM scores "
                        "at least this probability keep the dual encoder's order, ahead of the others "
                        "(default: none)")
    p.add_argument("--querybank", metavar="MANIFEST",
                   help="matching: querybank normalisation over these records' images and captions "
                        "(training records, not --data; default: none)")
    p.add_argument("--querybank-beta", type=float, help="matching: QB-Norm temperature (default: the logit scale)")


def _pixel_limit(value):
    """``--max-*-pixels``: a positive int, or ``none``."""
    if value.strip().lower() == "none":
        return None
    try:
        number = int(value.replace("_", ""))
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of pixels or 'none'. Received: {value!r}")
    return number


def _add_export_parser(subparsers):
    p = _command(subparsers, "export", _cmd_export,
                 help="export a .keras model: TF Serving SavedModel, one tower, or LiteRT")
    p.add_argument("model", help="a .keras file; runs/NAME/model.keras exports as NAME")
    p.add_argument("--base-dir", default="saved_models", help="where exports go")
    p.add_argument("--name", help="model name: exports to BASE_DIR/NAME/<version> (default: the run folder's "
                                  "name for runs/NAME/model.keras and its checkpoints, else the file's stem)")
    p.add_argument("--version", type=int, help="version number (default: the next free one, 1 for a new name)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing version or file")
    p.add_argument("--beam-width", type=int, help="captioning: beam width of the beam_search signature (default 4)")
    p.add_argument("--format", choices=["saved_model", "tflite"], default="saved_model",
                   help="saved_model (TF Serving) or tflite (LiteRT: classification/embedding signatures "
                   "over preprocessed inputs; writes BASE_DIR/NAME.tflite + .json)")
    p.add_argument("--tower", choices=["image", "text"],
                   help="export only this tower as a reusable hub-style SavedModel (BASE_DIR/NAME_TOWER_tower; "
                        "default: the whole model)")
    p.add_argument("--output", help="exact output path (default: BASE_DIR/NAME as above)")
    p.add_argument("--batch-size", default="auto", help="tflite: auto | none (dynamic) | N")
    p.add_argument("--input-type", choices=["raw", "tf_example"], default="raw",
                   help="tf_example: also signatures on serialized tf.train.Example (tf_example; classify for "
                        "classifiers, regress for matchers, NAME_tf_example for embed_image, embed_text, beam_search), "
                        "beside the raw ones")
    p.add_argument("--image-feature", help="tf_example: the Example feature holding the encoded image "
                                           "(default image/encoded)")
    p.add_argument("--text-feature", help="tf_example: the Example feature holding the text (default text)")
    p.add_argument("--max-image-pixels", type=_pixel_limit, metavar="N", default=argparse.SUPPRESS,
                   help="the served graph refuses an image over N pixels, from its header (default 25000000; "
                        "none: the model's own 50000000)")
    p.add_argument("--max-request-pixels", type=_pixel_limit, metavar="N", default=argparse.SUPPRESS,
                   help="the served graph refuses a request whose images hold over N pixels in all (default "
                        "100000000; none: no budget)")


def _add_predict_parser(subparsers):
    p = _command(subparsers, "predict", _cmd_predict,
                 help="run an exported SavedModel on image files and texts; prints JSON")
    p.add_argument("export_dir", help="an export: saved_models/NAME (its latest version) or a version directory")
    p.add_argument("--signature", default="serving_default", help="signature to run")
    p.add_argument("--image", nargs="+", help="image files (JPEG, PNG, GIF, BMP, WebP)")
    p.add_argument("--text", nargs="+", help="texts (questions, captions), one per image")
    p.add_argument("--data", metavar="MANIFEST",
                   help="run every row of a manifest instead of --image/--text: one JSON line per row, its source "
                        "(the manifest's file and line), image, text and outputs (a row without a text gives its "
                        "first caption)")
    p.add_argument("--columns", metavar="NAME=COLUMN,...", help="with --data: " + COLUMNS_HELP)
    p.add_argument("--batch-size", type=int, default=64,
                   help="images (rows of --data) per call of the signature, fewer where they would pass the "
                   "export's max_request_pixels; files are read one call at a time")
    p.add_argument("--skip-bad", action="store_true", help="with --data: skip bad rows of the manifest, reported")
    p.add_argument("--out", metavar="FILE",
                   help="with --data: write the JSON lines to FILE, whole or not at all (default: stdout)")
    p.add_argument("--overwrite", action="store_true", help="with --out: replace an existing FILE")


def _add_serve_config_parser(subparsers):
    p = _command(subparsers, "serve-config", _cmd_serve_config,
                 help="write models.config (and batching.config) for the models under a base path; "
                      "prints the server commands")
    p.add_argument("base_path", nargs="?", default="saved_models", help="the exports' base directory")
    p.add_argument("--batching", action="store_true",
                   help="also write batching.config (--batching_parameters_file; values for small CPU models, "
                        "see docs/serving.md)")
    p.add_argument("--num-batch-threads", type=int,
                   help="with --batching: the server's CPU cores (default: this machine's)")
    p.add_argument("--local", action="store_true",
                   help="models.config with this machine's absolute paths (a tensorflow_model_server here) "
                        "instead of /models (the Docker mount)")


def _add_data_parser(subparsers):
    p = _command(subparsers, "data", _cmd_data, help="generate the built-in shapes dataset")
    p.add_argument("--out", required=True, help="output directory (required)")
    p.add_argument("--num-images", type=int, default=1000, help="number of images")
    p.add_argument("--image-size", type=int, default=64, help="image height and width in pixels")
    p.add_argument("--seed", type=int, default=0, help="random seed")


# The subcommands, in the order `mmzoo --help` lists them.
_COMMAND_PARSERS = (
    _add_list_parser,
    _add_demo_parser,
    _add_train_parser,
    _add_evaluate_parser,
    _add_export_parser,
    _add_predict_parser,
    _add_serve_config_parser,
    _add_data_parser,
)


def build_parser() -> argparse.ArgumentParser:
    from mmzoo.version import __version__

    parser = argparse.ArgumentParser(
        prog="mmzoo",
        description="Multimodal (image + text) Keras model zoo.",
        epilog="TensorFlow's C++ log is off (TF_CPP_MIN_LOG_LEVEL=3) unless TF_CPP_MIN_LOG_LEVEL is set; "
        "TF_CPP_MIN_LOG_LEVEL=0 shows all of it.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mmzoo {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_parser in _COMMAND_PARSERS:
        add_parser(subparsers)
    return parser


# Commands that import TensorFlow themselves once their argument checks pass (quietly, as main
# does for the others, when _QUIET_TENSORFLOW: the user did not set TF_CPP_MIN_LOG_LEVEL).
_TENSORFLOW_AFTER_CHECKS = ("export",)
# Commands that never need TensorFlow (a text file from a directory listing): a fraction of a second.
_NO_TENSORFLOW = ("serve-config",)
_QUIET_TENSORFLOW = True


def _one_line(text) -> str:
    return " ".join(str(text).split())


def main(argv=None) -> int:
    user_set_log_level = _quiet_tf()
    args = build_parser().parse_args(argv)
    # The quiet import unless the user set TF's log level. `mmzoo export` imports it itself, after
    # refusing an existing target or a missing model file without the seconds it takes.
    global _QUIET_TENSORFLOW
    _QUIET_TENSORFLOW = not user_set_log_level
    if _QUIET_TENSORFLOW and args.command not in _TENSORFLOW_AFTER_CHECKS + _NO_TENSORFLOW:
        _import_tensorflow_quietly()
    from mmzoo.errors import error_text

    prefix = f"mmzoo {args.command}: error:"
    try:
        return int(args.fn(args) or 0)
    except FileExistsError as e:
        message = str(e)
        if "--overwrite" not in message:
            message = message.replace("pass overwrite=True", "pass --overwrite").replace(
                "or version=None for the next free one", "or leave out --version for the next free one")
        if "--overwrite" not in message:
            message += " Pass --overwrite to replace it."
        print(f"{prefix} {_one_line(message)}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, TypeError) as e:
        print(f"{prefix} {error_text(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # TensorFlow errors carry a message worth showing, without the graph dump
        import tensorflow as tf

        if isinstance(e, tf.errors.OpError):
            print(f"{prefix} {error_text(e.message)}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
