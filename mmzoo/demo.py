"""``mmzoo demo``: the whole path on the built-in shapes data, end to end.

1. generate the built-in shapes data (train / val / test splits),
2. train a fused classifier next to the two unimodal baselines, a dual
   encoder and a captioner, and print their metrics,
3. export each to ``saved_models/<name>/<version>/`` and write
   ``saved_models/models.config``,
4. reload every export in a fresh process that imports only ``tensorflow``
   and ``tensorflow_text`` (as TF Serving would run it) and print its
   predictions for a few sample images.

``--quick`` shrinks the data and epochs to a run of about three minutes on
2 idle cores (the full run: about 9);
``--out DIR`` puts data, runs and exports under ``DIR``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

# Two plans: (train, val, test) sizes, preset, epochs per model. The full plan
# is the recipe benchmarks/fusion_quality.py found for the classifier to learn
# the shapes questions (which need colour AND shape of one object): training
# scenes of 1-3 shapes (one-shape scenes are what start shape learning),
# held-out scenes of 2-3, 32x32, preset tiny, ~20 epochs. The quick plan is the
# full one with fewer scenes (of 2-3 shapes) and epochs, a smoke run of the same
# path: too short for the fused classifier to learn the binding, which the demo
# says next to its figures. The captioner's 4 epochs: on the full plan's data it
# scores as well after 4 as after 8 (validation BLEU-4 0.687 / 0.682, CIDEr-D
# 4.22 / 4.18, measured 2026-12-02) in half the time
# (its run 199 s, from 342 s; the whole demo 547 s, from 790 s, on an idle machine).
_FULL_PLAN = {
    "splits": (6000, 500, 6),
    "train_shapes": (1, 3),
    "image_size": 32,
    "preset": "tiny",
    "epochs": {"classifier": 20, "baseline": 3, "dual_encoder": 8, "captioner": 4},
    "batch_size": 32,
}
PLANS = {
    "quick": {
        **_FULL_PLAN,
        "splits": (600, 150, 6),
        "train_shapes": (2, 3),
        "epochs": {"classifier": 8, "baseline": 4, "dual_encoder": 6, "captioner": 8},
    },
    "full": _FULL_PLAN,
}

CLASSIFIER = "cross_attention_classifier"
BASELINES = ("image_only_classifier", "text_only_classifier")
MATCHER = "dual_encoder"
CAPTIONER = "transformer_captioner"


def _log(msg):
    print(msg, flush=True)


def _epoch_line(name, epochs):
    """A Keras callback printing one line per epoch: the loss and the headline metric, train and val."""
    import keras

    class EpochLine(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            parts = [f"epoch {epoch + 1:>2}/{epochs}"]
            for key in ("loss", _headline_log_key(logs)):
                if key and key in logs:
                    parts.append(f"{key} {float(logs[key]):.3f}")
                    if f"val_{key}" in logs:
                        parts.append(f"val_{key} {float(logs[f'val_{key}']):.3f}")
            _log("        " + "  ".join(parts))

    return EpochLine()


def _headline_log_key(logs):
    """The first accuracy-like metric Keras logs (not the loss, not a learned temperature)."""
    for key in logs:
        if not key.startswith("val_") and any(m in key for m in ("accuracy", "auc", "recall", "f1")):
            return key
    return None


def run_demo(out_dir=None, quick=False, saved_models_dir=None) -> dict:
    """Run the demo; returns ``{"metrics": ..., "exports": ...}``."""
    start = time.perf_counter()
    plan = PLANS["quick" if quick else "full"]
    if saved_models_dir is None:
        saved_models_dir = os.path.join(out_dir, "saved_models") if out_dir else "saved_models"
    out_dir = out_dir or "mmzoo_out"
    data_dir, runs_dir = os.path.join(out_dir, "data"), os.path.join(out_dir, "runs")

    splits = _generate_data(data_dir, plan)
    results = _train_all(plan, splits, runs_dir)
    _log_classification_summary(results, quick, runs_dir)
    exports = _export_all(results, saved_models_dir)
    _reload_check(splits, exports, out_dir)
    _log(f"done in {time.perf_counter() - start:.0f}s. Runs in {runs_dir}/, exports in {saved_models_dir}/. "
         f"Serve them with: docker run ... --model_config_file=/models/models.config (see README)")
    return {"metrics": {k: v["metrics"] for k, v in results.items()}, "exports": exports}


def _generate_data(data_dir, plan) -> dict:
    """Step 1: the train / val / test splits of the shapes data; returns their manifest paths by split."""
    from mmzoo.datasets.shapes import generate_shapes_dataset, generate_shapes_splits

    n_train, n_val, n_test = plan["splits"]
    _log(f"[1/4] generating the built-in shapes data in {data_dir}/ ({n_train} train, {n_val} val images)")
    splits = generate_shapes_splits(
        data_dir, num_train=0, num_val=n_val, num_test=n_test, image_size=plan["image_size"], seed=0
    )
    splits["train"] = generate_shapes_dataset(
        data_dir, num_images=n_train, seed=0, split="train", image_size=plan["image_size"],
        num_shapes=plan["train_shapes"],
    )
    return splits


def _train_all(plan, splits, runs_dir) -> dict:
    """Step 2: train the classifier, its baselines, the matcher and the captioner; returns their results by name."""
    _log(f"[2/4] training at preset '{plan['preset']}' (image size {plan['image_size']}); runs in {runs_dir}/")
    jobs = [
        (CLASSIFIER, plan["epochs"]["classifier"]),
        *[(b, plan["epochs"]["baseline"]) for b in BASELINES],
        (MATCHER, plan["epochs"]["dual_encoder"]),
        (CAPTIONER, plan["epochs"]["captioner"]),
    ]
    return {name: _train_one(name, epochs, plan, splits, runs_dir) for name, epochs in jobs}


def _train_one(name, epochs, plan, splits, runs_dir) -> dict:
    """Train one zoo entry into ``runs_dir/name`` and print its validation metrics."""
    import keras

    from mmzoo.training import metric_lines, train

    t0 = time.perf_counter()
    run_dir = os.path.join(runs_dir, name)
    _log(f"      {name} ({epochs} epochs)")
    result = train(
        name,
        splits["train"],
        val_data=splits["val"],
        epochs=epochs,
        batch_size=plan["batch_size"],
        preset=plan["preset"],
        out_dir=run_dir,
        overrides={"image_size": [plan["image_size"]] * 2},
        verbose=0,
        callbacks=[_epoch_line(name, epochs)],
        overwrite=True,  # the demo writes its runs afresh every time
    )
    _log(f"      {name}: validation metrics ({time.perf_counter() - t0:.0f}s), run in {run_dir}/")
    for line in metric_lines(result["metrics"], result.get("chance"), indent="        "):
        _log(line)
    keras.backend.clear_session()
    return result


def _log_classification_summary(results, quick, runs_dir):
    """The fused classifier's validation accuracy next to its baselines' and chance, and where the logs are."""
    from mmzoo.training.callbacks import tensorboard_installed

    _log("")
    _log("      classification on the shapes questions (both modalities needed; validation accuracy):")
    chance = results[CLASSIFIER].get("chance", {})
    for name in (CLASSIFIER, *BASELINES):
        _log(f"        {name:<28} {results[name]['metrics']['accuracy']:.3f}")
    if "accuracy" in chance.get("metrics", {}):
        _log(f"        {'chance':<28} {chance['metrics']['accuracy']:.3f}  ({chance['rule']})")
    if quick:
        _log("      (--quick is a smoke run of the whole path: the fused classifier needs the full run's data and")
        _log("       epochs to learn which colour belongs to which shape; `mmzoo demo` without --quick shows it)")
    if tensorboard_installed():
        _log(f"      TensorBoard logs: {runs_dir}/NAME/logs (tensorboard --logdir {runs_dir})")
    else:
        _log("      no TensorBoard logs: the base install has no tensorboard (pip install tensorboard, or the "
             "[test] extra, adds them)")


def _export_all(results, saved_models_dir) -> dict:
    """Step 3: export the classifier, matcher and captioner, and write models.config; returns the export dirs."""
    import keras

    from mmzoo.export import export_saved_model, write_models_config

    _log(f"[3/4] exporting to {saved_models_dir}/")
    exports = {}
    for name in (CLASSIFIER, MATCHER, CAPTIONER):
        model = keras.saving.load_model(results[name]["model_path"], safe_mode=True, compile=False)
        exports[name] = export_saved_model(model, os.path.join(saved_models_dir, name))
        _log(f"      {exports[name]}")
        keras.backend.clear_session()
    config_path = write_models_config(saved_models_dir)
    _log(f"      {config_path}")
    if not os.path.exists(os.path.join(exports[CLASSIFIER], "assets.extra", "tf_serving_warmup_requests")):
        _log("      no warmup requests in the exports: pip install 'mmzoo[serving]' (tensorflow-serving-api) adds them")
    return exports


def _reload_request(splits, exports) -> dict:
    """What ``mmzoo.reload_check`` runs: the exports, a few test samples and the caption candidates."""
    from mmzoo.data import read_manifest

    samples = read_manifest(splits["test"])[:3]
    candidates = sorted({c for r in read_manifest(splits["val"]) for c in r.captions})[:200]
    for r in samples:  # every sample's own captions are among the candidates
        candidates.extend(c for c in r.captions if c not in candidates)
    return {
        "classifier": exports[CLASSIFIER],
        "matcher": exports[MATCHER],
        "captioner": exports[CAPTIONER],
        "images": [r.image for r in samples],
        "questions": [r.text for r in samples],
        "answers": [r.label for r in samples],
        "references": [r.captions[0] for r in samples],
        "captions": [list(r.captions) for r in samples],
        "candidates": candidates,
    }


def _reload_check(splits, exports, out_dir):
    """Step 4: reload every export in a fresh process (``mmzoo.reload_check``) and print its predictions."""
    _log("[4/4] reloading every export in a fresh process (tensorflow + tensorflow_text only);")
    _log("      ✓ / ✗: the prediction is right / wrong")
    request_path = os.path.join(out_dir, "demo_request.json")
    request = _reload_request(splits, exports)
    with open(request_path, "w") as f:
        json.dump(request, f)
    proc = subprocess.run(
        [sys.executable, "-m", "mmzoo.reload_check", request_path],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONIOENCODING": "utf-8"},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"Reloading the exports in a fresh process failed:\n{proc.stderr[-3000:]}")
    try:
        sys.stdout.write(proc.stdout)
    except UnicodeEncodeError:  # a terminal without ✓ and ✗
        sys.stdout.write(proc.stdout.replace("✓", "+").replace("✗", "x"))
