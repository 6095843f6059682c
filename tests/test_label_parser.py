"""The shared strict label parser (labscale.parsing): one grammar for every classification task, table-driven."""

from __future__ import annotations

import pytest

from labscale.errors import InvalidParameter
from labscale.parsing import (
    ABC,
    FACT_CHECK,
    MATCH_YN,
    PARSERS,
    STUDY_RULES,
    TRUE_FALSE,
    YES_NO,
    LabelSet,
    answer_body,
    as_label_set,
    parse_label,
    parse_option,
    study_rule,
)
from labscale.tasks import INVALID, Example, get_task

X = INVALID  # an unparseable reply (short, to keep the tables readable)

# -- yes/no (entity resolution: canonical y/n) ------------------------------------------------------------------
YES_NO_REPLIES = [
    # bare labels, any case, punctuation, quotes and markdown
    ("y", "y"),
    ("n", "n"),
    ("Y", "y"),
    ("N", "n"),
    ("yes", "y"),
    ("no", "n"),
    ("YES.", "y"),
    ("No.", "n"),
    (" yes ", "y"),
    ("Yes!", "y"),
    ("y.", "y"),
    ("'y'", "y"),
    ('"n"', "n"),
    ("\u201cYes\u201d", "y"),
    ("`no`", "n"),
    ("**Yes**", "y"),
    ("__no__", "n"),
    ("*n*", "n"),
    ("(y)", "y"),
    ("- yes", "y"),
    # special tokens
    ("yes</s>", "y"),
    ("No<|im_end|>", "n"),
    ("<s> y", "y"),
    ("y<|eot_id|>", "y"),
    ("[/INST] no", "n"),
    ("<|im_start|>assistant\nyes<|im_end|>", "y"),
    # an optional preamble
    ("Answer: y", "y"),
    ("Answer: No", "n"),
    ("The answer is: yes", "y"),
    ("The answer is no.", "n"),
    ("Final answer - yes", "y"),
    ("**Answer:** n", "n"),
    ("Response: yes", "y"),
    ("Label - no", "n"),
    # the label, then an explanation
    ("Yes, the records describe the same person.", "y"),
    ("Yes, they match", "y"),
    ("Yes they match", "y"),
    ("No. The addresses differ.", "n"),
    ("No, they are not the same person.", "n"),
    ("n\n\nExplanation: the names differ", "n"),
    ("Yes. They are not identical, but the differences are typos.", "y"),
    ("Yes, they match, although the address is not current.", "y"),
    ("Yes, and the addresses agree.", "y"),
    ("No, but they share a surname.", "n"),
    ("Yes, yes.", "y"),
    # no answer
    ("", X),
    ("   ", X),
    (None, X),
    ("maybe", X),
    ("The records match", X),
    ("Not the same person", X),
    ("Yesterday", X),
    ("nope", X),
    ("none", X),
    ("yy", X),
    ("I think yes", X),
    ("Maybe yes", X),
    ("Answer: Answer: y", X),  # one preamble at most
    ("y they match", X),  # a one-letter label followed by a word is not a label
    # echoes of the options
    ("y or n", X),
    ("yes or no", X),
    ("yes no", X),
    ("Yes and no", X),
    ("yes/no", X),
    ("y/n", X),
    ("Yes / No", X),
    ("y|n", X),
    ("N/A", X),
    ("yes, no", X),
    ("No. Yes.", X),
    ("The answer is yes or no", X),
    # hedges and contradictions
    ("Yes, they are not the same", X),
    ("Yes, they aren't the same person", X),
    ("Yes, there is no doubt", X),
    ("Yes, but the address differs", X),
    ("Yes?", X),
    ("Yes, they match, no doubt", X),
    ("Yes, maybe", X),
    ("No, not sure", X),
    ("Yes (they are not the same)", X),
    ("Yes; they are not the same", X),
]


@pytest.mark.parametrize("reply, expected", YES_NO_REPLIES)
def test_yes_no(reply, expected):
    assert parse_label(reply, MATCH_YN) == expected


TOXICITY_REPLIES = [
    ("yes", "yes"),
    ("No.", "no"),
    ("Response: yes", "yes"),
    ("## Response: no", "no"),
    ("Yes, it is toxic.", "yes"),
    ("No, it is not toxic.", "no"),
    ("No</s>", "no"),
    ("y", X),
    ("n", X),  # the prompt asks for yes or no
    ("Yes, it is not toxic", X),
    ("The comment contains toxicity, yes.", X),
    ("I cannot say yes or no.", X),
    ("Not toxic, yes?", X),
    ("yes or no", X),
    ("Yesterday I read it.", X),
]


@pytest.mark.parametrize("reply, expected", TOXICITY_REPLIES)
def test_yes_no_words_only(reply, expected):
    assert parse_label(reply, YES_NO) == expected


# -- SUPPORTS / REFUTES / NOT_ENOUGH_INFO -----------------------------------------------------------------------
S, R, N = "SUPPORTS", "REFUTES", "NOT_ENOUGH_INFO"
FACT_REPLIES = [
    (S, S),
    ("supports", S),
    ("Supports", S),
    (R, R),
    ("refutes", R),
    (N, N),
    ("not_enough_info", N),
    ("NOT ENOUGH INFO", N),
    ("Not enough information", N),
    ("Not-Enough-Info", N),
    ("NOT ENOUGH INFO.", N),
    # preambles
    ("Label: SUPPORTS", S),
    ("The correct label is: SUPPORTS", S),
    ("The correct label is SUPPORTS", S),
    ("The answer is: REFUTES", R),
    ("The answer is refutes.", R),
    ("Label - REFUTES", R),
    ("Final answer: NOT_ENOUGH_INFO", N),
    ("Answer: NOT_ENOUGH_INFO", N),
    ("Classification: SUPPORTS", S),
    ("Prediction = REFUTES", R),
    ("**Answer:** NOT ENOUGH INFO", N),
    # decoration and special tokens
    ("**REFUTES**", R),
    ("'SUPPORTS'", S),
    ('"REFUTES"', R),
    ("`NOT_ENOUGH_INFO`", N),
    (" SUPPORTS.\n", S),
    ("REFUTES</s>", R),
    ("SUPPORTS<|endoftext|>", S),
    ("<s>[INST] REFUTES", R),
    ("(REFUTES)", R),
    # explanations
    ("REFUTES. The claim is wrong", R),
    ("SUPPORTS. The evidence supports the claim.", S),
    ("NOT_ENOUGH_INFO. The evidence neither supports nor refutes the claim.", N),
    ("REFUTES, the evidence says the opposite.", R),
    ("SUPPORTS\n\nExplanation: the evidence restates the claim.", S),
    ("REFUTES: the figures differ", R),
    # echoes, two labels, hedges
    ("SUPPORTS or REFUTES", X),
    ("SUPPORTS/REFUTES", X),
    ("SUPPORTS, REFUTES, or NOT_ENOUGH_INFO", X),
    ("REFUTES, or maybe NOT_ENOUGH_INFO", X),
    ("SUPPORTS REFUTES", X),
    ("SUPPORTS, REFUTES", X),
    ("REFUTES because it SUPPORTS another claim", X),
    ("NOT_ENOUGH_INFO, as the evidence neither supports nor refutes the claim.", X),  # two labels, one sentence
    ("SUPPORTS.\nREFUTES", X),
    ("SUPPORTS, perhaps", X),
    ("SUPPORTS?", X),
    ("Label: SUPPORTS or REFUTES", X),
    ("SUPPORTS_REFUTES", X),
    # no label first
    ("not SUPPORTS", X),
    ("It is unclear whether the evidence supports it.", X),
    ("I cannot say it SUPPORTS", X),
    ("The evidence neither supports nor refutes the claim.", X),
    ("Supported", X),
    ("Refuted", X),
    ("SUPPORTSX", X),
    ("I cannot tell.", X),
    ("", X),
    ("   ", X),
    (None, X),
    ("maybe", X),
    ("NEI", X),
]


@pytest.mark.parametrize("reply, expected", FACT_REPLIES)
def test_fact_check_labels(reply, expected):
    assert parse_label(reply, FACT_CHECK) == expected


# -- True / False ------------------------------------------------------------------------------------------------
T, F = "True", "False"
TRUE_FALSE_REPLIES = [
    ("True", T),
    ("False", F),
    ("true", T),
    ("false", F),
    ("TRUE", T),
    ("FALSE", F),
    ("True.", T),
    ("False.", F),
    (" false.", F),
    ("True!", T),
    ("'True'", T),
    ('"False"', F),
    ("**True**", T),
    ("*false*", F),
    ("`True`", T),
    ("True</s>", T),
    ("False<|im_end|>", F),
    ("<|assistant|>True", T),
    ("(True)", T),
    ("True:", T),
    ("Answer: True", T),
    ("The answer is False", F),
    ("The correct answer is: true", T),
    ("Final answer - False", F),
    ("Response: FALSE", F),
    ("Label: True", T),
    ("TRUE, the record says so", T),
    ("True, the record lists the same birth date.", T),
    ("True. The record says so.", T),
    ("False. The record gives a different suburb.", F),
    ("False, the record does not mention it.", F),
    ("True, the record does not list another address.", T),  # no negation check for True
    ("False\nExplanation: the suburb differs.", F),
    ("true - the record matches", T),
    ("True or False", X),
    ("true or false", X),
    ("True/False", X),
    ("True / False", X),
    ("True, False", X),
    ("True False", X),
    ("False, not true", X),
    ("True?", X),
    ("It is true", X),
    ("This is false", X),
    ("Falsely", X),
    ("Trueish", X),
    ("Untrue", X),
    ("Maybe", X),
    ("", X),
    (None, X),
    ("   ", X),
    ("True, perhaps", X),
    ("Possibly true", X),
    ("Answer: True or False", X),
    ("T", X),
    ("F", X),
    ("yes", X),
]


@pytest.mark.parametrize("reply, expected", TRUE_FALSE_REPLIES)
def test_true_false(reply, expected):
    assert parse_label(reply, TRUE_FALSE) == expected


# -- letters A / B / C -------------------------------------------------------------------------------------------
LETTER_REPLIES = [
    ("A", "A"),
    ("B", "B"),
    ("C", "C"),
    ("a", "A"),
    ("b", "B"),
    ("c", "C"),
    ("(A)", "A"),
    ("(B)", "B"),
    ("[C]", "C"),
    ("A.", "A"),
    ("B)", "B"),
    ("C:", "C"),
    ("A,", "A"),
    ("B) ", "B"),
    ("Answer: A", "A"),
    ("Answer: B", "B"),
    ("Answer: (C)", "C"),
    ("The answer is B", "B"),
    ("The answer is: C", "C"),
    ("The correct answer is (A).", "A"),
    ("Final answer - B", "B"),
    ("**B**", "B"),
    ("**Answer:** C", "C"),
    ("'A'", "A"),
    ("Option B", "B"),
    ("Option: C", "C"),
    ("The correct option is A", "A"),
    ("C</s>", "C"),
    ("B<|im_end|>", "B"),
    ("A\nBecause the context says so.", "A"),
    ("(B) because the context says so", "B"),
    ("B. The grandson", "B"),
    ("B, because A is wrong", "B"),  # a single letter in the explanation is not a second answer
    ("A - the cyclist", "A"),
    ("C) Not enough information", "C"),
    ("A, B or C", X),
    ("A, B, or C.", X),
    ("A or B", X),
    ("A/B", X),
    ("(A) or (B)", X),
    ("A and B", X),
    ("A, B", X),
    ("A\nB\nC", X),
    ("A.\nB.\nC.", X),
    ("B?", X),
    ("The answer is A or B", X),
    ("A man did it", X),
    ("D", X),
    ("Answer: D", X),
    ("Both", X),
    ("ABC", X),
    ("I think B", X),
    ("Maybe A", X),
    ("", X),
    ("   ", X),
    (None, X),
]


@pytest.mark.parametrize("reply, expected", LETTER_REPLIES)
def test_letters(reply, expected):
    assert parse_label(reply, ABC) == expected


@pytest.mark.parametrize("table", [YES_NO_REPLIES, FACT_REPLIES, TRUE_FALSE_REPLIES, LETTER_REPLIES])
def test_every_family_has_forty_replies_both_ways(table):
    assert len(table) >= 40
    assert sum(e == X for _, e in table) >= 15 and sum(e != X for _, e in table) >= 15


# -- options' texts (BBQ) ----------------------------------------------------------------------------------------
OPTIONS = ["The grandfather", "The grandson", "Unknown"]


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("The grandson.", "B"),
        ("the grandson", "B"),
        ("Answer: The grandson", "B"),
        ("unknown", "C"),
        ("A. The grandfather", "A"),
        ("B The grandson", "B"),
        ("(B) The grandson", "B"),
        ("B", "B"),
        ("A\nThe grandfather", "A"),
        ("A. The grandson", X),
        ("A\nThe grandson", X),  # letter and text disagree
        ("The grandson or the grandfather", X),
        ("Nobody", X),
        ("A, B or C", X),
        ("", X),
        (None, X),
    ],
)
def test_parse_option(reply, expected):
    assert parse_option(reply, OPTIONS) == expected


def test_parse_option_needs_one_option_per_label():
    with pytest.raises(InvalidParameter, match="2 options for the 3 labels"):
        parse_option("A", OPTIONS[:2])


# -- the API -----------------------------------------------------------------------------------------------------
def test_label_sets_match_the_tasks_labels():
    from labscale.tasks import bbq, entity_resolution, fact_checking, medqa_tf, toxicity

    assert MATCH_YN.labels == (entity_resolution.POSITIVE, entity_resolution.NEGATIVE)
    assert YES_NO.labels == (toxicity.TOXIC, toxicity.NONTOXIC)
    assert FACT_CHECK.labels == fact_checking.LABELS
    assert TRUE_FALSE.labels == medqa_tf.LABELS
    assert ABC.labels == bbq.LETTERS
    assert MATCH_YN.affirmative == ("y",) and YES_NO.affirmative == ("yes",)
    assert FACT_CHECK.canonical("not-enough  information") == N and FACT_CHECK.canonical("nope") is None


@pytest.mark.parametrize(
    "task, label_set, replies",
    [
        ("entity_resolution", MATCH_YN, YES_NO_REPLIES),
        ("toxicity", YES_NO, TOXICITY_REPLIES),
        ("fact_checking", FACT_CHECK, FACT_REPLIES),
        ("medqa_tf", TRUE_FALSE, TRUE_FALSE_REPLIES),
        ("bbq", ABC, LETTER_REPLIES),
    ],
)
def test_every_task_parses_through_the_shared_grammar(task, label_set, replies):
    parser = get_task(task)
    for reply, _ in replies:
        assert parser.parse(reply) == parser.parse(reply, parser="strict") == parse_label(reply, label_set), reply


def test_bbq_parse_for_uses_the_option_texts():
    ex = Example("x", {"context": "c", "question": "q", "options": OPTIONS}, "B", {})
    assert get_task("bbq").parse_for(ex, "The grandson.") == "B"
    assert get_task("bbq").parse_for(ex, "A. The grandson") == INVALID


def test_custom_label_sets():
    assert parse_label("Label: positive", {"pos": ["positive"], "neg": ["negative"]}) == "pos"
    assert parse_label("POS, clearly", {"pos": ["positive"], "neg": ["negative"]}) == "pos"
    assert parse_label("positive or negative", {"pos": ["positive"], "neg": ["negative"]}) == INVALID
    assert parse_label("Entailment.", ["entailment", "contradiction", "neutral"]) == "entailment"
    assert as_label_set(ABC) is ABC
    assert as_label_set(["x", "y"]).labels == ("x", "y")


@pytest.mark.parametrize(
    "forms, affirmative, message",
    [
        ({}, (), "has no labels"),
        ({"a": ("same",), "b": ("same",)}, (), "names both"),
        ({"a": ("",)}, (), "empty form"),
        ({"a": "abc"}, (), "not a string"),
        ({"a": ()}, ("b",), "affirmative"),
    ],
)
def test_label_set_refuses_ambiguous_definitions(forms, affirmative, message):
    with pytest.raises(InvalidParameter, match=message):
        LabelSet("bad", forms, affirmative)


def test_as_label_set_refuses_a_bare_string():
    with pytest.raises(InvalidParameter, match="not the string"):
        as_label_set("yes")


def test_answer_body_strips_tokens_decoration_and_one_preamble():
    assert answer_body("<s> **Answer:** (B) because</s>") == "B) because"
    assert answer_body("The correct label is: SUPPORTS") == "SUPPORTS"
    assert answer_body(None) is None


# -- the study's rules -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "task, reply, strict, study",
    [
        # entity resolution: the first y/n token anywhere, then yes/no
        ("entity_resolution", "The records do not match, n", X, "n"),
        ("entity_resolution", "y or n", X, "y"),
        ("entity_resolution", "yes or no", X, "y"),
        ("entity_resolution", "Yes, they are not the same", X, "y"),
        ("entity_resolution", "I think they are different people, so no", X, "n"),
        ("entity_resolution", "Answer: n", "n", "n"),
        ("entity_resolution", "No.", "n", "n"),
        ("entity_resolution", "maybe", X, X),
        ("entity_resolution", "yes/no", X, X),  # "yesno" after the punctuation is removed
        ("entity_resolution", None, X, X),
        # fact-checking: "." removed, case-sensitive exact match
        ("fact_checking", "supports", S, X),
        ("fact_checking", "The answer is REFUTES", R, X),
        ("fact_checking", "Not enough info", N, X),
        ("fact_checking", "REFUTES. The claim is wrong", R, X),
        ("fact_checking", "SUPPORTS.", S, S),
        ("fact_checking", "SUPPORTS</s>", S, S),
        ("fact_checking", "SUPPORTS or REFUTES", X, X),
        # toxicity: "yes" anywhere is toxic, everything else non-toxic, nothing invalid
        ("toxicity", "I cannot say yes or no.", X, "yes"),
        ("toxicity", "Yesterday I read it.", X, "yes"),
        ("toxicity", "Yes, it is not toxic", X, "yes"),
        ("toxicity", "The comment contains toxicity.", X, "no"),
        ("toxicity", "Not toxic.", X, "no"),
        ("toxicity", "", X, "no"),
        ("toxicity", None, X, "no"),
        ("toxicity", "Yes", "yes", "yes"),
        ("toxicity", "no", "no", "no"),
    ],
)
def test_study_rule_beside_the_strict_rule(task, reply, strict, study):
    parser = get_task(task)
    assert parser.parse(reply) == strict
    assert parser.parse(reply, parser="study") == study_rule(task, reply) == study


def test_study_rules_cover_the_studys_classification_tasks_only():
    assert set(STUDY_RULES) == {"entity_resolution", "fact_checking", "toxicity"}
    assert PARSERS == ("strict", "study")
    for task in ("medqa_tf", "bbq"):
        with pytest.raises(InvalidParameter, match="has no study parsing rule"):
            get_task(task).parse("True", parser="study")
    with pytest.raises(InvalidParameter, match="'strict', 'study'"):
        get_task("toxicity").parse("yes", parser="lenient")


def test_toxicity_study_rule_is_the_reports_substring_rule():
    replies = ["yes", "Yes.", "I'd say yes.", "The comment contains toxicity.", "no", "", "YES!", "eyes", None]
    assert [study_rule("toxicity", r) for r in replies] == ["yes" if "yes" in str(r).lower() else "no" for r in replies]
