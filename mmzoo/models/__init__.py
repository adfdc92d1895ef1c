"""Registered zoo entries. Importing this module registers every entry."""

from mmzoo.models.base import MultimodalModel  # noqa: F401
from mmzoo.models import classifiers  # noqa: F401
from mmzoo.models import matching  # noqa: F401
from mmzoo.models import captioning  # noqa: F401
from mmzoo.models import multitask  # noqa: F401
