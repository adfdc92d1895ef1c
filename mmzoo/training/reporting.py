"""What a run reports: chance levels beside each metric, and the summary
``mmzoo train`` prints."""

from __future__ import annotations

import os

from mmzoo.tasks import task_for

HEADLINE_METRICS = (
    "accuracy", "macro_f1", "micro_f1", "image_to_text_recall@1", "image_to_text_recall@5",
    "text_to_image_recall@1", "text_to_image_recall@5", "bleu_4", "cider_d", "exact_match",
)


def chance_levels(model, eval_records, train_records=None, metrics=None) -> dict:
    """What each headline metric is worth without learning: ``{"rule": str, "metrics": {name: value}}``,
    as the model's task defines it (``Task.chance`` in ``mmzoo.tasks``): the most common answer
    for classifiers, a random ranking for matchers, the most common training caption for captioners."""
    try:
        task = task_for(model)
    except ValueError:  # not a zoo task: nothing to compare with
        return {"rule": "", "metrics": {}}
    return task.chance(eval_records, train_records, metrics)


def metric_lines(metrics: dict, chance: dict | None = None, indent: str = "  ") -> list[str]:
    """One line per headline metric, with its chance level (``chance_levels``) beside it."""
    chance = chance or {}
    values = chance.get("metrics", {})
    keys = [k for k in HEADLINE_METRICS if k in metrics] or [k for k, v in metrics.items()
                                                             if isinstance(v, float) and not k.startswith("num_")]
    width = max((len(k) for k in keys), default=0)
    value_width = max((len(f"{metrics[k]:.3f}") for k in keys), default=0)  # CIDEr-D reaches 10
    lines, rule = [], chance.get("rule")
    for key in keys:
        line = f"{indent}{key:<{width}}  {metrics[key]:>{value_width}.3f}"
        if key in values:
            line += f"   chance {values[key]:.3f}"
            if rule:  # said once, on the first line with a chance level
                line, rule = line + f" ({rule})", None
        lines.append(line)
    return lines


def format_result(result: dict, data: str | None = None, columns=None) -> str:
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
        lines.extend(_written_lines(model_path, data, columns))
    return "\n".join(lines)


def format_evaluation(metrics: dict, model, records, model_path=None, data=None) -> str:
    """What ``mmzoo evaluate`` prints before its JSON line: each headline metric beside
    its chance level on the evaluated records (``chance_levels``)."""
    head = "mmzoo evaluate: " + (f"{model_path} on {data}" if model_path and data else "the model")
    if metrics.get("num_examples"):
        head += f", {int(metrics['num_examples'])} examples"
    elif metrics.get("num_images"):
        head += f", {int(metrics['num_images'])} images"
        if metrics.get("num_texts"):
            head += f" and {int(metrics['num_texts'])} distinct captions"
    lines = [head + ":"]
    lines.extend(metric_lines(metrics, chance_levels(model, records, metrics=metrics), indent="  "))
    return "\n".join(lines)


def _held_out(data) -> str:
    """The manifest to suggest for ``mmzoo evaluate`` after training on ``data``: its
    ``test`` (else ``val``, ``validation``) sibling when one exists (``data/train/manifest.jsonl``
    -> ``data/test/manifest.jsonl``, ``train.csv`` -> ``test.csv``), else a placeholder:
    the training data itself would only say how well the model remembers it."""
    if data:
        head, tail = os.path.split(data)
        parent, folder = os.path.split(head)
        for split in ("test", "val", "validation"):
            candidates = [os.path.join(head, tail.replace("train", split))] if "train" in tail else []
            if "train" in folder:
                candidates.append(os.path.join(parent, folder.replace("train", split), tail))
            for candidate in candidates:
                if os.path.isfile(candidate):
                    return candidate
    return "HELD_OUT_MANIFEST"


def _written_lines(model_path, data, columns=None) -> list[str]:
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
    if isinstance(columns, dict):
        columns = ",".join(f"{k}={v}" for k, v in columns.items())
    columns = f" --columns {columns}" if columns else ""
    lines.append(f"next: mmzoo evaluate {model_path} --data {_held_out(data)}{columns}  |  "
                 f"mmzoo export {model_path}  (as {os.path.basename(out_dir)})")
    return lines
