"""How mmzoo's preprocessing is traced into ``tf.data`` maps and ``tf.map_fn`` loops."""

from __future__ import annotations

import tensorflow as tf

# Traced as written, without AutoGraph. Every function mmzoo maps over a dataset or loops over
# with tf.map_fn has its tensor-dependent control flow as tf.cond / tf.switch_case / tf.map_fn /
# assertions already, so AutoGraph's conversion only costs time: parsing and rewriting the 25
# preprocessing functions a pipeline reaches, once per process, took 3.0 s of `mmzoo evaluate`'s
# 5.4 s after imports on a 100-row manifest (2026-12-01). It also stops the conversion of what the
# wrapped function calls (a pretokenizer, a decoder).
as_written = tf.autograph.experimental.do_not_convert
