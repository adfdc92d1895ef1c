"""Evaluation: running a model over records and scoring it with ``mmzoo.metrics``.

* ``evaluate_model(model, records)``: dispatches on ``model.task``.
* ``evaluate_classifier``, ``evaluate_matcher`` (Recall@K, re-ranking,
  querybank normalisation), ``evaluate_captioner`` (BLEU, CIDEr-D) and
  ``generate_captions``.
* ``records_to_retrieval_set``, ``preprocess_images``, ``tokenize_texts``:
  records to model inputs (also used by hard-negative mining).
"""

from mmzoo.evaluation.captioning import evaluate_captioner, generate_captions
from mmzoo.evaluation.classification import evaluate_classifier, predict_records
from mmzoo.evaluation.inputs import preprocess_images, records_to_retrieval_set, tokenize_texts
from mmzoo.evaluation.retrieval import embed_querybank, evaluate_matcher

_EVALUATORS = {"classification": evaluate_classifier, "matching": evaluate_matcher, "captioning": evaluate_captioner}


def evaluate_model(model, records, batch_size: int = 64, **options) -> dict:
    """Evaluate any zoo model on ``records``, dispatching on ``model.task``."""
    task = getattr(model, "task", None)
    if task not in _EVALUATORS:
        raise ValueError(
            "evaluate_model needs a mmzoo model with task 'classification', 'matching' or "
            f"'captioning'. Received: a {type(model).__name__} with task={task!r}"
        )
    if task == "classification":
        return evaluate_classifier(model, records, batch_size=batch_size)
    return _EVALUATORS[task](model, records, batch_size=batch_size, **options)


__all__ = [
    "embed_querybank",
    "evaluate_captioner",
    "evaluate_classifier",
    "evaluate_matcher",
    "evaluate_model",
    "generate_captions",
    "predict_records",
    "preprocess_images",
    "records_to_retrieval_set",
    "tokenize_texts",
]
