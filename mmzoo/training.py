"""Training a zoo entry from a manifest: the engine behind ``mmzoo train``.

    from mmzoo.training import train
    result = train("gated_classifier", "data/train/manifest.jsonl", preset="tiny",
                   epochs=1, out_dir="runs/gated")

Writes ``OUT/model.keras``, ``OUT/metrics.json``, ``OUT/history.csv`` and
``OUT/run_config.json`` (everything needed to repeat the run).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import keras

from mmzoo.registry import build, get_entry


def parse_overrides(pairs) -> dict[str, Any]:
    """``["a=1", "image_tower_kwargs.filters=[8,16]", "fusion=gated"]`` to kwargs.

    Values are parsed as JSON when they parse (numbers, lists, booleans,
    null), else kept as strings; dotted keys build nested dicts.
    """
    out: dict[str, Any] = {}
    for pair in pairs or ():
        if "=" not in pair:
            raise ValueError(f"--set expects key=value. Received: {pair!r}")
        key, raw = pair.split("=", 1)
        key = key.strip()
        if not key:
            raise ValueError(f"--set expects a non-empty key. Received: {pair!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"--set key {key!r} conflicts with an earlier value.")
        node[parts[-1]] = value
    return out


def corpus_texts(records, task: str) -> list[str]:
    if task == "classification":
        return [r.text for r in records if r.text]
    texts = []
    for r in records:
        texts.extend(r.captions or [])
    return texts


def _auto_sequence_length(texts, task: str) -> int:
    longest = max((len(t.split()) for t in texts), default=8)
    extra = 2 if task == "captioning" else 0
    return int(min(64, max(8, longest + extra)))


def build_for_data(name: str, records, preset: str | None = None, overrides: dict | None = None):
    """Build zoo entry ``name`` with a tokenizer learned from ``records``' texts
    and (for classifiers) the label names found in them."""
    from mmzoo.data import label_names_from_records
    from mmzoo.preprocessing import TextTokenizer

    entry = get_entry(name)
    overrides = dict(overrides or {})
    if "tokenizer" not in overrides:
        texts = corpus_texts(records, entry.task)
        if not texts:
            raise ValueError(
                f"The training data has no {'text' if entry.task == 'classification' else 'caption'} "
                f"column values to learn a vocabulary from (zoo entry '{name}' is a {entry.task} model)."
            )
        seq_len = int(overrides.pop("sequence_length", 0) or _auto_sequence_length(texts, entry.task))
        overrides["tokenizer"] = TextTokenizer.from_corpus(
            texts,
            mode=overrides.pop("tokenizer_mode", "word"),
            vocabulary_size=int(overrides.pop("vocabulary_size", 8000)),
            sequence_length=seq_len,
            add_start_end=entry.task == "captioning",
        )
    if entry.task == "classification" and "label_names" not in overrides:
        overrides["label_names"] = label_names_from_records(records)
        if any(isinstance(r.label, (list, tuple)) for r in records):
            overrides.setdefault("mode", "multilabel")
    return build(name, preset=preset, **overrides)


def train(
    name: str,
    data: str,
    *,
    val_data: str | None = None,
    epochs: int = 5,
    batch_size: int = 32,
    preset: str | None = None,
    out_dir: str = "runs/model",
    overrides: dict | None = None,
    learning_rate: float | None = None,
    seed: int = 0,
    skip_bad: bool = False,
    verbose: int | str = "auto",
) -> dict:
    """Train zoo entry ``name`` on manifest ``data``; returns the metrics dict."""
    from mmzoo.data import make_dataset, read_manifest
    from mmzoo.metrics import evaluate_model

    keras.utils.set_random_seed(seed)
    records = read_manifest(data, skip_bad=skip_bad)
    val_records = read_manifest(val_data, skip_bad=skip_bad) if val_data else None
    model = build_for_data(name, records, preset=preset, overrides=overrides)
    compile_kwargs = {}
    if learning_rate is not None:
        compile_kwargs["optimizer"] = keras.optimizers.Adam(learning_rate)
    model.compile(**compile_kwargs)
    train_ds = make_dataset(records, model, batch_size=batch_size, training=True, seed=seed, skip_bad=skip_bad)
    val_ds = (
        make_dataset(val_records, model, batch_size=batch_size, training=False, skip_bad=skip_bad)
        if val_records
        else None
    )
    os.makedirs(out_dir, exist_ok=True)
    callbacks = [keras.callbacks.CSVLogger(os.path.join(out_dir, "history.csv"))]
    start = time.perf_counter()
    history = model.fit(
        train_ds, validation_data=val_ds, epochs=epochs, callbacks=callbacks, verbose=verbose, shuffle=False
    )  # shuffle=False: make_dataset already shuffles (seeded)
    train_seconds = time.perf_counter() - start
    model_path = os.path.join(out_dir, "model.keras")
    model.save(model_path)
    metrics = evaluate_model(model, val_records or records, batch_size=batch_size)
    result = {
        "model": name,
        "task": model.task,
        "preset": preset or get_entry(name).default_preset,
        "evaluated_on": "val" if val_records else "train",
        "metrics": metrics,
        "final_loss": float(history.history["loss"][-1]),
        "epochs": epochs,
        "train_seconds": round(train_seconds, 2),
        "num_params": int(model.count_params()),
        "model_path": model_path,
    }
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
        json.dump(result, f, indent=2)
    run_config = {
        "name": name, "data": os.path.abspath(data), "val_data": os.path.abspath(val_data) if val_data else None,
        "epochs": epochs, "batch_size": batch_size, "preset": preset, "learning_rate": learning_rate,
        "seed": seed, "overrides": {k: v for k, v in (overrides or {}).items() if k != "tokenizer"},
    }
    with open(os.path.join(out_dir, "run_config.json"), "w") as f:
        json.dump(run_config, f, indent=2)
    return result
