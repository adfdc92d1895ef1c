import numpy as np
import pytest

from mmzoo.matching.negatives import find_phrases, normalize_word_groups, word_swap_negative

GROUPS = [["red", "blue", "green"], ["circle", "square"], ["small", "large"], ["left of", "above", "next to"]]


def test_phrases_are_found_longest_first_and_do_not_overlap():
    groups = normalize_word_groups([["left", "right"], ["left of", "above"]])
    spans = find_phrases("a circle left of a square at the left".split(), groups)
    assert [(s, e, g) for s, e, g, _ in spans] == [(2, 4, 1), (8, 9, 0)]


def test_a_replacement_changes_exactly_one_phrase_within_its_group():
    rng = np.random.default_rng(0)
    text = "a small red circle"
    seen = set()
    for _ in range(50):
        neg = word_swap_negative(text, GROUPS, rng, exchange_probability=0.0)
        words, original = neg.split(), text.split()
        assert len(words) == len(original) and neg != text
        changed = [(a, b) for a, b in zip(original, words) if a != b]
        assert len(changed) == 1
        a, b = changed[0]
        assert any(a in g and b in g for g in GROUPS)
        seen.add(neg)
    # Every group present in the text gets edited over 50 draws.
    assert {"a large red circle", "a small blue circle", "a small red square"} <= seen


def test_an_exchange_swaps_the_binding_of_two_attributes():
    rng = np.random.default_rng(1)
    text = "a red circle left of a blue square"
    negs = {word_swap_negative(text, GROUPS, rng, exchange_probability=1.0) for _ in range(20)}
    # Exchanges: colours (red<->blue) or shapes (circle<->square); never a same-word "swap".
    assert negs == {"a blue circle left of a red square", "a red square left of a blue circle"}


def test_multi_word_phrases_are_replaced_whole():
    rng = np.random.default_rng(2)
    negs = {word_swap_negative("the circle next to the square", [["left of", "next to", "above"]], rng)
            for _ in range(30)}
    assert negs == {"the circle left of the square", "the circle above the square"}


def test_texts_without_any_phrase_and_bad_groups():
    rng = np.random.default_rng(0)
    assert word_swap_negative("two shapes", GROUPS, rng) is None
    with pytest.raises(ValueError, match="at least two"):
        word_swap_negative("a red circle", [["red"]], rng)
    with pytest.raises(ValueError, match="non-empty strings"):
        word_swap_negative("a red circle", [["red", " "]], rng)
    with pytest.raises(ValueError, match="at least one group"):
        normalize_word_groups([])
    with pytest.raises(ValueError, match="exchange_probability"):
        word_swap_negative("a red circle", GROUPS, rng, exchange_probability=2.0)


def test_normalized_groups_are_accepted_again_and_give_the_same_edits():
    groups = normalize_word_groups(GROUPS)
    assert normalize_word_groups(groups) == groups
    assert groups[3][2] == ("next", "to")
    text = "a small red circle left of a large blue square"
    a = [word_swap_negative(text, GROUPS, np.random.default_rng(7)) for _ in range(3)]
    b = [word_swap_negative(text, groups, np.random.default_rng(7)) for _ in range(3)]
    assert a == b


RELATIONS = {"relations": ("left of", "right of", "above", "next to"), "noun_phrase": r"an? (?:small |large )?\w+ \w+",
             "symmetric": ("next to",)}


def test_relation_negatives_swap_subject_and_object_or_change_the_relation():
    from mmzoo.matching.negatives import RelationGrammar

    grammar = RelationGrammar.coerce(RELATIONS)
    rng = np.random.default_rng(0)
    text = "there is a small red circle left of a large blue square and a green triangle"
    negs = {grammar.negative(text, rng) for _ in range(60)}
    swap = "there is a large blue square left of a small red circle and a green triangle"
    others = {text.replace("left of", r) for r in ("right of", "above", "next to")}
    assert negs == {swap} | others
    assert {grammar.negative(text, rng, swap_probability=1.0) for _ in range(5)} == {swap}
    assert {grammar.negative(text, rng, swap_probability=0.0) for _ in range(40)} == others


def test_symmetric_relations_and_identical_noun_phrases_are_never_swapped():
    from mmzoo.matching.negatives import RelationGrammar

    grammar = RelationGrammar(**RELATIONS)
    rng = np.random.default_rng(1)
    for text in ("a red circle next to a blue square", "a red circle above a red circle"):
        for _ in range(20):
            neg = grammar.negative(text, rng, swap_probability=1.0)
            subject, _, obj = text.partition(" above " if " above " in text else " next to ")
            assert neg.startswith(subject) and neg.endswith(obj) and neg != text


def test_relation_negatives_need_a_relation_between_two_noun_phrases():
    from mmzoo.matching.negatives import RelationGrammar

    grammar = RelationGrammar(**RELATIONS)
    rng = np.random.default_rng(2)
    assert grammar.negative("a red circle and a blue square", rng) is None
    assert grammar.negative("a red circle left of", rng) is None
    # Relations are matched on word boundaries: "a red circle aboveground..." is not "above".
    assert grammar.negative("a red circle aboveground a blue square", rng) is None


def test_bad_relation_grammars_are_refused_with_the_reason():
    from mmzoo.matching.negatives import RelationGrammar

    with pytest.raises(ValueError, match="two different"):
        RelationGrammar(["above", "above"], r"a \w+")
    with pytest.raises(ValueError, match="list of phrases"):
        RelationGrammar("above", r"a \w+")
    with pytest.raises(ValueError, match="list of phrases"):
        RelationGrammar(["above", None], r"a \w+")
    with pytest.raises(ValueError, match="capturing groups"):
        RelationGrammar(["above", "below"], r"a (red|blue) \w+")
    with pytest.raises(ValueError, match="regular expression"):
        RelationGrammar(["above", "below"], r"a (\w+")
    with pytest.raises(ValueError, match="symmetric"):
        RelationGrammar(["above", "below"], r"a \w+", symmetric=["next to"])
    with pytest.raises(ValueError, match="'relations' and 'noun_phrase'"):
        RelationGrammar.coerce({"relations": ["above", "below"]})
    with pytest.raises(TypeError, match="RelationGrammar or a mapping"):
        RelationGrammar.coerce(["above", "below"])
    with pytest.raises(ValueError, match="swap_probability"):
        RelationGrammar(**RELATIONS).negative("a red circle above a blue square", np.random.default_rng(0),
                                              swap_probability=1.5)
