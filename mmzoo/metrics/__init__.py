"""Metrics: classification (accuracy, F1), retrieval (R@K) and captioning (BLEU, CIDEr-D)."""


def evaluate_model(model, records, batch_size: int = 64, **options) -> dict:
    """Evaluate any zoo model on ``records``, dispatching on ``model.task``."""
    task = getattr(model, "task", None)
    if task == "classification":
        from mmzoo.metrics.classification import evaluate_classifier

        return evaluate_classifier(model, records, batch_size=batch_size)
    if task == "matching":
        from mmzoo.metrics.retrieval import evaluate_matcher

        return evaluate_matcher(model, records, batch_size=batch_size, **options)
    if task == "captioning":
        from mmzoo.metrics.captioning import evaluate_captioner

        return evaluate_captioner(model, records, batch_size=batch_size, **options)
    raise ValueError(
        "evaluate_model needs a mmzoo model with task 'classification', 'matching' or "
        f"'captioning'. Received: a {type(model).__name__} with task={task!r}"
    )
