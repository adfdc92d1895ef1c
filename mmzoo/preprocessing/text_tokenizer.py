"""`TextTokenizer`: raw strings to fixed-length token ids, inside the graph."""

from __future__ import annotations

import collections

import keras
import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text
from tensorflow_text.python.ops import regex_split_ops as _regex_split_ops  # its kernel, for _regex_split

from mmzoo.preprocessing._raw_inputs import accept_raw_inputs
from mmzoo.preprocessing.tracing import as_written

RESERVED_TOKENS = ("[PAD]", "[UNK]", "[START]", "[END]")
PAD_ID, UNK_ID, START_ID, END_ID = 0, 1, 2, 3

# Pre-tokenization: split on whitespace; punctuation, symbols and CJK
# ideographs become tokens of their own (as BERT's basic tokenizer does).
_SPLIT_PATTERN = r"\s+|[\p{P}\p{S}\p{Han}]"
_KEEP_PATTERN = r"[\p{P}\p{S}\p{Han}]"
_WORDPIECE_SUFFIX = "##"
# Word mode reuses FastWordpieceTokenizer as an exact whole-word lookup (no
# lookup table to track in exports): a private-use suffix indicator that
# normalised text never produces, so a word is either in the vocabulary or [UNK].
_WORD_SUFFIX = "\ue000"
_MAX_BYTES_PER_WORD = 100
_MODES = ("word", "wordpiece")
_PRETOKENIZERS = ("mmzoo", "bert")

# pretokenizer="bert": BERT's basic tokenizer as keras-hub's WordPieceTokenizer
# writes it (keras_hub/src/tokenizers/word_piece_tokenizer.py, 0.32), so ids
# match keras_hub.models.BertTokenizer: whitespace and invisible control
# characters split; ASCII non-alphanumerics, Unicode punctuation and CJK
# ideographs are tokens of their own (other symbols, e.g. "€", are not).
_BERT_WHITESPACE = r"\s|\p{Cc}|\p{Cf}"
_BERT_PUNCTUATION = r"[!-/]|[:-@]|[\[-`]|[{-~]|[\p{P}]"
_BERT_CJK = (
    r"[\x{4E00}-\x{9FFF}]|[\x{3400}-\x{4DBF}]|[\x{20000}-\x{2A6DF}]|[\x{2A700}-\x{2B73F}]"
    r"|[\x{2B740}-\x{2B81F}]|[\x{2B820}-\x{2CEAF}]|[\x{F900}-\x{FAFF}]|[\x{2F800}-\x{2FA1F}]"
)


def _as_str(token) -> str:
    if isinstance(token, bytes):
        return token.decode("utf-8")
    return str(token)


@keras.saving.register_keras_serializable(package="mmzoo")
class TextTokenizer(keras.layers.Layer):
    """Raw UTF-8 strings to fixed-length ``token_ids``, as a Keras layer.

    Text is made valid UTF-8 (invalid bytes become U+FFFD, which tokenizes to
    ``[UNK]``: never an error), Unicode NFKC-normalised, case-folded when
    ``lowercase=True``, split on whitespace with punctuation and symbols as
    tokens of their own, then looked up:

    * ``mode="word"``: whole words; a word outside the vocabulary is ``[UNK]``.
    * ``mode="wordpiece"``: WordPiece subwords with ``tensorflow_text``'s
      ``FastWordpieceTokenizer`` (continuation pieces start with ``##``).

    Both modes compile the vocabulary into a constant of the graph, so the
    layer runs in ``tf.data``, inside ``tf.function`` and in SavedModels with
    no lookup table or asset to track. The vocabulary is part of
    ``get_config``, so it travels inside ``.keras`` files.

    Reserved ids are fixed: ``[PAD]=0``, ``[UNK]=1``, ``[START]=2``,
    ``[END]=3``; they are placed first whether or not ``vocabulary`` lists
    them. Output: int32 ``[batch, sequence_length]``, truncated and padded with
    0 (so ``token_ids != 0`` is the padding mask). With ``add_start_end=True``
    each row is ``[START] ... [END]`` within ``sequence_length``.

    Args:
        vocabulary: list of tokens (strings).
        mode: ``"word"`` or ``"wordpiece"``.
        sequence_length: length of every output row.
        lowercase: case-fold the text (and compare with the vocabulary as is).
        add_start_end: wrap each row in ``[START]``/``[END]``.
        strip_accents: drop combining marks after NFD decomposition
            (``"café"`` -> ``"cafe"``), as uncased BERT vocabularies expect.
        pretokenizer: ``"mmzoo"`` (NFKC, split on whitespace, punctuation,
            symbols and Han ideographs) or ``"bert"`` (BERT's basic tokenizer
            as keras-hub's ``WordPieceTokenizer`` does it: no NFKC unless
            ``lowercase``, symbols such as ``"€"`` stay inside words,
            invisible control characters split). With ``"bert"``, a BERT
            ``vocab.txt`` and ``add_start_end=True`` the tokens are those of
            ``keras_hub.models.BertTokenizer`` (same ``lowercase`` and
            ``strip_accents``) wrapped in ``[CLS]``/``[SEP]``, under mmzoo's
            reserved ids (``mmzoo.towers.keras_hub`` maps them to BERT's).

    Example:

    >>> tokenizer = TextTokenizer(["a", "red", "circle"], sequence_length=6)
    >>> tokenizer(["A red circle!"]).numpy().tolist()
    [[4, 5, 6, 1, 0, 0]]
    >>> tokenizer.detokenize([[4, 5, 6, 0, 0, 0]]).numpy().tolist()
    [b'a red circle']
    """

    pad_id = PAD_ID
    unk_id = UNK_ID
    start_id = START_ID
    end_id = END_ID
    reserved_tokens = RESERVED_TOKENS

    def __init__(
        self,
        vocabulary,
        mode: str = "word",
        sequence_length: int = 16,
        lowercase: bool = True,
        add_start_end: bool = False,
        strip_accents: bool = False,
        pretokenizer: str = "mmzoo",
        **kwargs,
    ):
        kwargs.setdefault("dtype", "int32")
        super().__init__(**kwargs)
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}. Received: mode={mode!r}")
        if pretokenizer not in _PRETOKENIZERS:
            raise ValueError(
                f"pretokenizer must be one of {_PRETOKENIZERS}. Received: pretokenizer={pretokenizer!r}"
            )
        if isinstance(sequence_length, bool) or not isinstance(sequence_length, (int, np.integer)):
            raise ValueError(
                f"sequence_length must be a positive int. Received: sequence_length={sequence_length!r}"
            )
        sequence_length = int(sequence_length)
        min_length = 3 if add_start_end else 1
        if sequence_length < min_length:
            raise ValueError(
                f"sequence_length must be at least {min_length}"
                f"{' with add_start_end=True' if add_start_end else ''}. "
                f"Received: sequence_length={sequence_length}"
            )
        if vocabulary is None or isinstance(vocabulary, (str, bytes)):
            raise ValueError(
                f"vocabulary must be a list of strings. Received: vocabulary={vocabulary!r:.80}"
            )
        tokens = [_as_str(t) for t in list(vocabulary)]
        tokens = [t for t in tokens if t not in RESERVED_TOKENS]
        empty = [i for i, t in enumerate(tokens) if not t]
        if empty:
            raise ValueError(f"vocabulary must not contain empty strings. Received one at position {empty[0]}.")
        dupes = [t for t, c in collections.Counter(tokens).items() if c > 1]
        if dupes:
            raise ValueError(f"vocabulary must not contain duplicates. Received duplicates: {dupes[:10]}")
        self.vocabulary = list(RESERVED_TOKENS) + tokens
        self.mode = mode
        self.sequence_length = sequence_length
        self.lowercase = bool(lowercase)
        self.add_start_end = bool(add_start_end)
        self.strip_accents = bool(strip_accents)
        self.pretokenizer = pretokenizer
        self._model_buffer = None
        accept_raw_inputs(self)

    # ------------------------------------------------------------------ info
    @property
    def vocabulary_size(self) -> int:
        """Number of tokens, the 4 reserved ones included."""
        return len(self.vocabulary)

    def get_vocabulary(self) -> list[str]:
        return list(self.vocabulary)

    # --------------------------------------------------------------- helpers
    def _wordpiece(self):
        if self._model_buffer is None:
            suffix = _WORDPIECE_SUFFIX if self.mode == "wordpiece" else _WORD_SUFFIX
            buffer = tf_text.build_fast_wordpiece_model(
                self.vocabulary, _MAX_BYTES_PER_WORD, suffix, "[UNK]", True, False
            )
            self._model_buffer = np.frombuffer(buffer, dtype=np.uint8)
        return tf_text.FastWordpieceTokenizer(
            model_buffer=tf.constant(self._model_buffer, dtype=tf.uint8),
            token_out_type=tf.int32,
        )

    def _vocab_tensor(self):
        return tf.constant(self.vocabulary, dtype=tf.string)

    def normalize(self, strings):
        """Valid UTF-8, NFKC, case-folded (when ``lowercase``), accents stripped (when ``strip_accents``)."""
        strings = tf_text.coerce_to_structurally_valid_utf8(strings)
        if self.strip_accents:
            strings = _strip_accents(strings)
        if self.lowercase:
            return tf_text.case_fold_utf8(strings)  # NFKC_Casefold
        return tf_text.normalize_utf8(strings, "NFKC")

    def pretokenize(self, strings):
        """Normalised words and punctuation: ragged string ``[batch, words]``."""
        words, row_splits = self._words(strings)
        return tf.RaggedTensor.from_row_splits(words, row_splits, validate=False)

    def _words(self, strings):
        """``pretokenize`` as its flat words and each string's row splits into them.

        TensorFlow Text's own ``regex_split`` builds three validated ragged tensors (the words and
        their offsets): 200 ops and 9 conditionals to trace in every graph that tokenizes, for row
        splits that its kernel makes valid by construction. The kernel alone is 5 ops."""
        if self.pretokenizer == "bert":  # keras-hub's pretokenize: CJK spaced, accents stripped, split, case-folded
            strings = tf_text.coerce_to_structurally_valid_utf8(strings)
            strings = tf.strings.regex_replace(strings, _BERT_CJK, r" \0 ")
            if self.strip_accents:
                strings = _strip_accents(strings, recompose=False)
            words, row_splits = _regex_split(
                strings, f"{_BERT_WHITESPACE}|{_BERT_PUNCTUATION}|{_BERT_CJK}", f"{_BERT_PUNCTUATION}|{_BERT_CJK}")
            return (tf_text.case_fold_utf8(words) if self.lowercase else words), row_splits
        return _regex_split(self.normalize(strings), _SPLIT_PATTERN, _KEEP_PATTERN)

    @staticmethod
    def _to_string_tensor(inputs):
        if isinstance(inputs, tf.RaggedTensor):
            raise ValueError("TextTokenizer expects a dense string tensor [batch]. Received a RaggedTensor.")
        if not tf.is_tensor(inputs):
            inputs = tf.convert_to_tensor(inputs)
        if inputs.dtype != tf.string:
            raise ValueError(
                f"TextTokenizer expects a string tensor. Received: dtype={inputs.dtype.name}"
            )
        return inputs

    # ------------------------------------------------------------------ call
    def call(self, inputs):
        strings = self._to_string_tensor(inputs)
        rank = strings.shape.rank
        if rank == 0:
            return self.call(tf.reshape(strings, [1]))[0]
        if rank == 2:
            if strings.shape[-1] != 1:
                raise ValueError(
                    "TextTokenizer expects strings of shape [batch] or [batch, 1]. "
                    f"Received: shape={strings.shape}"
                )
            strings = tf.reshape(strings, [-1])
        elif rank != 1:
            raise ValueError(
                f"TextTokenizer expects strings of shape [batch]. Received: shape={strings.shape}"
            )
        words, word_splits = self._words(strings)
        pieces = self._wordpiece().tokenize(words)  # [words, pieces]
        return _padded_rows(pieces.flat_values, tf.gather(pieces.row_splits, word_splits),
                            self.sequence_length, self.add_start_end)

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) == 0:
            return (self.sequence_length,)
        return (input_shape[0], self.sequence_length)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(self.compute_output_shape(inputs.shape), dtype="int32")

    # ------------------------------------------------------ ids and strings
    def id_to_token(self, ids):
        """Token strings for int ``ids`` (any shape); unknown ids give ``[UNK]``."""
        ids = tf.cast(tf.convert_to_tensor(ids), tf.int32)
        valid = (ids >= 0) & (ids < self.vocabulary_size)
        return tf.gather(self._vocab_tensor(), tf.where(valid, ids, UNK_ID))

    def token_to_id(self, tokens):
        """int32 ids for token strings (any shape, exact match); others give ``[UNK]``."""
        tokens = tf.convert_to_tensor(tokens, dtype=tf.string)
        matches = tf.equal(tf.expand_dims(tokens, -1), self._vocab_tensor())
        ids = tf.argmax(tf.cast(matches, tf.int32), axis=-1, output_type=tf.int32)
        return tf.where(tf.reduce_any(matches, axis=-1), ids, UNK_ID)

    def detokenize(self, ids):
        """int ``ids [batch, length]`` back to strings ``[batch]``.

        Drops ``[PAD]`` and ``[START]``, stops at the first ``[END]``, joins
        tokens with spaces (wordpiece: ``##`` pieces glue to the previous one).
        """
        if isinstance(ids, tf.RaggedTensor):
            ids = ids.to_tensor(default_value=PAD_ID)
        ids = tf.cast(tf.convert_to_tensor(ids), tf.int32)
        if ids.shape.rank == 1:
            return self.detokenize(ids[tf.newaxis])[0]
        before_end = tf.equal(tf.cumsum(tf.cast(tf.equal(ids, END_ID), tf.int32), axis=-1), 0)
        keep = before_end & tf.not_equal(ids, PAD_ID) & tf.not_equal(ids, START_ID)
        # Each kept token followed by a space, joined, the last space cut: a ragged boolean_mask
        # and join would trace 120 more ops into every graph that writes captions.
        text = tf.strings.reduce_join(tf.where(keep, tf.strings.join([self.id_to_token(ids), " "]), ""), axis=-1)
        length = tf.strings.length(text)
        text = tf.strings.substr(text, tf.zeros_like(length), tf.maximum(length - 1, 0))
        if self.mode == "wordpiece":
            text = tf.strings.regex_replace(text, r"(^| )##", "")
        return text

    # ---------------------------------------------------------------- config
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary": list(self.vocabulary),
                "mode": self.mode,
                "sequence_length": self.sequence_length,
                "lowercase": self.lowercase,
                "add_start_end": self.add_start_end,
                "strip_accents": self.strip_accents,
                "pretokenizer": self.pretokenizer,
            }
        )
        return config

    # ---------------------------------------------------------- from_corpus
    @classmethod
    def from_corpus(
        cls,
        texts,
        mode: str = "word",
        vocabulary_size: int = 8000,
        sequence_length: int = 16,
        lowercase: bool = True,
        min_frequency: int = 1,
        **kwargs,
    ) -> "TextTokenizer":
        """Learn a vocabulary of at most ``vocabulary_size`` tokens from ``texts``.

        ``texts``: a list of strings or a ``tf.data.Dataset`` of strings
        (scalars or batches). ``mode="word"`` keeps the most frequent words
        (ties broken alphabetically) seen at least ``min_frequency`` times;
        ``mode="wordpiece"`` learns WordPiece with
        ``tensorflow_text``'s ``bert_vocab_from_dataset``. ``vocabulary_size``
        counts the 4 reserved tokens. Other ``kwargs`` go to the constructor.

        >>> tok = TextTokenizer.from_corpus(["a red circle", "a blue square"],
        ...                                 vocabulary_size=20, sequence_length=4)
        >>> tok.vocabulary[:5]
        ['[PAD]', '[UNK]', '[START]', '[END]', 'a']
        """
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}. Received: mode={mode!r}")
        if int(vocabulary_size) <= len(RESERVED_TOKENS):
            raise ValueError(
                f"vocabulary_size must be larger than the {len(RESERVED_TOKENS)} reserved tokens. "
                f"Received: vocabulary_size={vocabulary_size}"
            )
        vocabulary_size = int(vocabulary_size)
        probe = cls(["x"], mode=mode, sequence_length=max(sequence_length, 3), lowercase=lowercase)

        dataset = _pretokenized_batches(probe, texts)
        if mode == "word":
            vocabulary = _word_vocabulary(dataset, vocabulary_size, min_frequency)
        else:
            vocabulary = _wordpiece_vocabulary(dataset, vocabulary_size)
        return cls(
            vocabulary,
            mode=mode,
            sequence_length=sequence_length,
            lowercase=lowercase,
            **kwargs,
        )


def _regex_split(strings, split_pattern, keep_pattern):
    """``tf_text.regex_split`` of ``strings`` (``[batch]``) as its kernel gives it: the flat
    words and each string's row splits (valid by construction, so not validated again)."""
    words, _, _, row_splits = _regex_split_ops.gen_regex_split_ops.regex_split_with_offsets(
        strings, f"({split_pattern})", f"({keep_pattern})")
    return words, row_splits


def _padded_rows(values, row_splits, length, add_start_end):
    """Each row of ``values`` (``row_splits``: int64 ``[batch + 1]``) cut to ``length`` ids (with
    ``START_ID`` before and ``END_ID`` after when ``add_start_end``) and padded with ``PAD_ID``:
    int32 ``[batch, length]``. Dense gathers: ragged slicing, concatenation and ``to_tensor``
    would add over a hundred ops to trace."""
    first = 1 if add_start_end else 0
    starts = row_splits[:-1, None]
    kept = tf.minimum(row_splits[1:, None] - starts, length - 2 * first)
    position = tf.range(length, dtype=tf.int64)[None, :] - first  # within the row's ids
    index = tf.minimum(starts + tf.maximum(position, 0), tf.size(values, out_type=tf.int64))
    ids = tf.gather(tf.concat([tf.cast(values, tf.int32), [PAD_ID]], 0), index)  # PAD_ID past the last row
    ids = tf.where((position >= 0) & (position < kept), ids, PAD_ID)
    if add_start_end:
        ids = tf.where(tf.equal(position, -1), START_ID, tf.where(tf.equal(position, kept), END_ID, ids))
    return ids


def _strip_accents(strings, recompose=True):
    """NFD, combining marks (``\\p{Mn}``) removed, then NFC again when ``recompose``."""
    strings = tf.strings.regex_replace(tf_text.normalize_utf8(strings, "NFD"), r"\p{Mn}", "")
    return tf_text.normalize_utf8(strings, "NFC") if recompose else strings


def _pretokenized_batches(probe, texts):
    """Batches of ``texts`` (a list or ``tf.data.Dataset``) split into words by ``probe``."""
    if isinstance(texts, tf.data.Dataset):
        dataset = texts
        if dataset.element_spec.shape.rank == 0:
            dataset = dataset.batch(1024)
    else:
        texts = [t if isinstance(t, (str, bytes)) else str(t) for t in texts]
        dataset = tf.data.Dataset.from_tensor_slices(tf.constant(texts, dtype=tf.string)).batch(1024)
    return dataset.map(
        as_written(lambda s: probe.pretokenize(tf.reshape(s, [-1]))), num_parallel_calls=tf.data.AUTOTUNE
    )


def _word_vocabulary(dataset, vocabulary_size, min_frequency):
    """Most frequent words (ties alphabetical) seen at least ``min_frequency`` times."""
    counts = collections.Counter()
    for words in dataset.map(as_written(lambda w: w.flat_values)).as_numpy_iterator():
        counts.update(words.tolist())
    ranked = sorted(
        (item for item in counts.items() if item[1] >= min_frequency),
        key=lambda item: (-item[1], item[0]),
    )
    vocabulary = [w.decode("utf-8") for w, _ in ranked if w.decode("utf-8") not in RESERVED_TOKENS]
    return vocabulary[: vocabulary_size - len(RESERVED_TOKENS)]


def _wordpiece_vocabulary(dataset, vocabulary_size):
    """WordPiece vocabulary learned with ``tensorflow_text``'s ``bert_vocab_from_dataset``."""
    from tensorflow_text.tools.wordpiece_vocab import bert_vocab_from_dataset as bert_vocab

    joined = dataset.map(as_written(lambda w: tf.strings.reduce_join(w, axis=-1, separator=" ")))
    vocabulary = bert_vocab.bert_vocab_from_dataset(
        joined,
        vocab_size=vocabulary_size,
        reserved_tokens=list(RESERVED_TOKENS),
        bert_tokenizer_params={"lower_case": False},
        learn_params={},
    )
    vocabulary = [t for t in vocabulary if t not in RESERVED_TOKENS]
    return vocabulary[: vocabulary_size - len(RESERVED_TOKENS)]
