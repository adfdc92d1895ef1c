"""In-graph preprocessing layers: image bytes and raw strings to model inputs.

Both layers run eagerly, in ``tf.data`` pipelines, inside ``tf.function`` and
inside exported SavedModels (only TensorFlow and tensorflow_text ops).
"""

from mmzoo.preprocessing.image_preprocessor import ImagePreprocessor
from mmzoo.preprocessing.text_tokenizer import RESERVED_TOKENS, TextTokenizer

__all__ = ["ImagePreprocessor", "RESERVED_TOKENS", "TextTokenizer"]
