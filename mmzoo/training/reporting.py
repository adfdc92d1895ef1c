"""What a run reports: chance levels beside each metric, and the summary
``mmzoo train`` prints."""

from __future__ import annotations

import collections
import os

HEADLINE_METRICS = (
    "accuracy", "macro_f1", "micro_f1", "image_to_text_recall@1", "image_to_text_recall@5",
    "text_to_image_recall@1", "text_to_image_recall@5", "bleu_4", "cider_d", "exact_match",
)


def chance_levels(model, eval_records, train_records=None, metrics=None) -> dict:
    """What each headline metric is worth without learning: ``{"rule": str, "metrics": {name: value}}``.

    * classification: always answering the most common label of the
      evaluated records (accuracy, macro-F1; exact match for multi-label);
    * matching: a random ranking (recall@K of ``num_images`` images against
      ``num_texts`` captions);
    * captioning: the most common training caption, given for every image
      (BLEU, CIDEr-D, exact match), a reference rather than chance.
    """
    task = getattr(model, "task", None)
    if task == "classification":
        return _classification_chance(eval_records)
    if task == "matching":
        return _matching_chance(metrics or {})
    if task == "captioning":
        return _captioning_chance(eval_records, train_records)
    return {"rule": "", "metrics": {}}


def _classification_chance(eval_records) -> dict:
    labels = [r.label for r in eval_records if r.label is not None]
    if not labels:
        return {"rule": "no labels", "metrics": {}}
    if any(isinstance(label, (list, tuple)) for label in labels):
        sets = collections.Counter(tuple(sorted(label)) for label in labels)
        top, count = sets.most_common(1)[0]
        return {"rule": f"always the most common label set {list(top)}",
                "metrics": {"exact_match": count / len(labels)}}
    counts = collections.Counter(str(label) for label in labels)
    top, count = counts.most_common(1)[0]
    p = count / len(labels)
    return {"rule": f"always the most common answer, {top!r}",
            "metrics": {"accuracy": p, "macro_f1": 2 * p / (1 + p) / len(counts)}}


def _matching_chance(metrics) -> dict:
    images, texts = int(metrics.get("num_images") or 0), int(metrics.get("num_texts") or 0)
    if not images or not texts:
        return {"rule": "a random ranking", "metrics": {}}
    per_image = texts / images  # captions per image
    out = {}
    for k in (1, 5, 10):
        if f"image_to_text_recall@{k}" in metrics:
            # P(at least one of the image's captions among k random picks of all captions)
            miss = 1.0
            for j in range(min(k, texts)):
                miss *= max(0.0, (texts - per_image - j) / (texts - j))
            out[f"image_to_text_recall@{k}"] = 1.0 - miss
        if f"text_to_image_recall@{k}" in metrics:
            out[f"text_to_image_recall@{k}"] = min(1.0, k / images)
    return {"rule": f"a random ranking of {images} images and {texts} captions", "metrics": out}


def _captioning_chance(eval_records, train_records) -> dict:
    train_captions = [c for r in (train_records or eval_records) for c in (r.captions or [])]
    evaluated = [r for r in eval_records if r.captions]
    if not train_captions or not evaluated:
        return {"rule": "no captions", "metrics": {}}
    from mmzoo.metrics.bleu import normalize_caption
    from mmzoo.metrics.captioning import caption_scores

    top = collections.Counter(normalize_caption(c) for c in train_captions).most_common(1)[0][0]
    scores = caption_scores([r.captions for r in evaluated], [top] * len(evaluated))
    return {"rule": f"the most common training caption, {top!r}, for every image",
            "metrics": {k: float(v) for k, v in scores.items()}}


def metric_lines(metrics: dict, chance: dict | None = None, indent: str = "  ") -> list[str]:
    """One line per headline metric, with its chance level (``chance_levels``) beside it."""
    chance = chance or {}
    values = chance.get("metrics", {})
    keys = [k for k in HEADLINE_METRICS if k in metrics] or [k for k, v in metrics.items()
                                                             if isinstance(v, float) and not k.startswith("num_")]
    width = max((len(k) for k in keys), default=0)
    lines = []
    for i, key in enumerate(keys):
        line = f"{indent}{key:<{width}}  {metrics[key]:.3f}"
        if key in values:
            line += f"   chance {values[key]:.3f}"
            if i == 0 and chance.get("rule"):
                line += f" ({chance['rule']})"
        lines.append(line)
    return lines


def format_result(result: dict, data: str | None = None) -> str:
    """``train``'s result as the few lines ``mmzoo train`` prints (``--json`` prints the dict)."""
    lines = [
        f"mmzoo train: {result['model']} (preset {result['preset']}) trained {result['epochs_run']} epoch(s)"
        + (f" after resuming at epoch {result['initial_epoch'] + 1}" if result.get("initial_epoch") else "")
        + f" in {result['train_seconds']:.1f} s; final loss {result['final_loss']:.4f}; "
          f"{result['num_params']:,} parameters"
    ]
    metrics = result.get("metrics", {})
    count = metrics.get("num_examples") or metrics.get("num_images")
    where = "the validation data" if result.get("evaluated_on") == "val" else \
        "the training data (no --val-data: these figures flatter the model)"
    lines.append(f"evaluated on {where}" + (f", {int(count)} examples" if count else "") + ":")
    lines.extend(metric_lines(metrics, result.get("chance"), indent="  "))
    model_path = result.get("model_path")
    if model_path:
        lines.extend(_written_lines(model_path, data))
    return "\n".join(lines)


def _written_lines(model_path, data) -> list[str]:
    """What the run directory holds, and the commands to use the model next."""
    out_dir = os.path.dirname(model_path)
    written = [n for n in ("model.keras", "metrics.json", "history.csv", "run_config.json")
               if os.path.exists(os.path.join(out_dir, n))]
    if os.path.isdir(os.path.join(out_dir, "logs")):
        written.append("logs/ (TensorBoard)")
    if os.path.isdir(os.path.join(out_dir, "checkpoints")):
        written.append("checkpoints/")
    lines = [f"wrote {out_dir}{os.sep}: " + ", ".join(written)]
    if not os.path.isdir(os.path.join(out_dir, "logs")):
        lines.append("no TensorBoard logs: pip install tensorboard to write OUT/logs")
    lines.append(f"next: mmzoo evaluate {model_path} --data {data or 'MANIFEST'}  |  "
                 f"mmzoo export {model_path}  (as {os.path.basename(out_dir)})")
    return lines
