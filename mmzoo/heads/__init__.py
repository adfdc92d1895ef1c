"""Heads: classification, matching (dual encoder, ITM) and captioning (decoders, search)."""

from mmzoo.heads.classification_head import ClassificationHead  # noqa: F401
