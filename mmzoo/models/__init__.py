"""Registered zoo entries. Importing this module registers every entry."""

from mmzoo.models import (
    captioning,  # noqa: F401
    classifiers,  # noqa: F401
    matching,  # noqa: F401
    multitask,  # noqa: F401
)
from mmzoo.models.base import MultimodalModel  # noqa: F401
