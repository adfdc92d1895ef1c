"""Metrics on arrays and strings (no model, no data pipeline).

* classification: accuracy, macro-F1, multi-label F1 (``classification``);
* retrieval: Recall@K and ranks from embeddings or scores, querybank
  normalisation (``retrieval``);
* captioning: BLEU-1..4 (``bleu``), CIDEr-D (``cider``), ``caption_scores``.

Running a model over records: ``mmzoo.evaluation``.
"""
