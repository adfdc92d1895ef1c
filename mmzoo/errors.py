"""Error text for people: the message of a TensorFlow or Keras error, without the wrapping.

TensorFlow wraps a failed ``tf.Assert`` in a graph as::

    Graph execution error:

    Detected at node image_preprocessor_1/map/while/assert_valid_image_header/Assert defined at ...
    <stack traces unavailable>
    assertion failed: [Cannot decode image: the bytes are not a JPEG, PNG, GIF, BMP or WebP file (2 bytes, ...).]
    	 [[{{node image_preprocessor_1/map/while/assert_valid_image_header/Assert}}]] [Op:__inference_...]

and, run eagerly inside a Keras layer, as ``Exception encountered when calling
ImagePreprocessor.call(). <ESC>[1m ... Expected 'tf.Tensor(False, shape=(),
dtype=bool)' to be true. Summarized data: b'Cannot decode image: ...'<ESC>[0m
Arguments received by ...``. ``error_text`` returns the sentence the
assertion was written with (``Cannot decode image: ...``), or the message
itself, cleaned, when it is not one of these forms. No TensorFlow import.
"""

from __future__ import annotations

import re

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_KERAS_WRAPPER = re.compile(r"^Exception encountered when calling [^\n]*\n(.*?)(?:\n\s*Arguments received by .*)?$", re.S)
_SUMMARIZED_DATA = re.compile(r"Summarized data:(.*)$", re.S)
_BYTES_ITEM = re.compile(r"^b'(.*)'$|^b\"(.*)\"$", re.S)
_ASSERTION = re.compile(r"assertion failed:\s*\[(.*?)\](?:\s*\[\[|\s*$)", re.S)
_NOISE_LINES = re.compile(
    r"^(Graph execution error:|Detected at node .*|<stack traces unavailable>|\[\[\{\{node .*)$"
)


def error_text(message) -> str:
    """The useful part of a TensorFlow/Keras error message, on one line."""
    text = _ANSI.sub("", str(message)).strip()
    wrapped = _KERAS_WRAPPER.match(text)
    if wrapped:
        text = wrapped.group(1).strip()
    # Keras' "in user code:" block (a traced call): the error is on its last lines.
    if text.startswith("in user code:"):
        text = text.rsplit("\n\n", 1)[-1].strip()
        text = re.sub(r"^\w+Error:\s*", "", text)
    summarized = _SUMMARIZED_DATA.search(text)
    if summarized:  # the Assert's data items, one a line: b'a' / 2 / b'b' / 1 reads "a 2 b 1"
        items = summarized.group(1).strip().split("\n")
        text = " ".join(_BYTES_ITEM.sub(r"\1\2", item.strip()) for item in items)
    assertion = _ASSERTION.search(text)
    if assertion:  # the Assert's data items, each printed in brackets: "a] [2] [b] [1" reads "a 2 b 1"
        text = re.sub(r"\]\s*\[", " ", assertion.group(1))
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not _NOISE_LINES.match(line)]
    text = " ".join(lines)
    text = re.sub(r"\{\{function_node [^}]*\}\}", "", text)
    text = re.sub(r"\s*\[Op:[\w.-]+\](\s*name:.*)?$", "", text)
    return " ".join(text.split())
