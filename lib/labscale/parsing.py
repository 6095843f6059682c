"""One strict label parser for every classification task: a reply counts only when it *is* an answer.

Every classification task (entity resolution, fact-checking, toxicity, MedQA true/false, BBQ) parses its replies
with :func:`parse_label` and one :class:`LabelSet`; nothing else turns a reply into a label. A reply that does
not follow the grammar below is :data:`~labscale.core.INVALID`, scored as wrong and counted in the
``invalid_rate``: an echo of the options, a hedge or a self-contradiction is never read as an answer.

Grammar
-------
Matching is case-insensitive. ``LABEL`` is any surface form of the task's label set (:class:`LabelSet`); the
separators inside a form (space, ``_``, ``-``) are interchangeable, so "NOT_ENOUGH_INFO", "not enough info" and
"Not-Enough-Information" are one label. A form must end at a word boundary ("Yesterday", "Nope", "Both",
"Supported" and "Falsely" name no label)::

    reply     := SPECIAL* DECOR* [PREAMBLE DECOR*] LABEL CLOSE* continuation
    SPECIAL   := a chat special token, anywhere: </s> <s> <pad> <eos> <|im_end|> <|eot_id|> <|endoftext|>
                 <|...|> <end_of_turn> [INST] [/INST] ... (removed before parsing)
    DECOR     := white space | quotes ' " ` ‘ ’ “ ” « » | markdown * _ # > | bullets - • | opening ( [
    PREAMBLE  := [the | my | our] [correct | final | right | best | predicted]
                 (answer | label | response | classification | prediction | output | verdict | option | choice)
                 [is | would be | will be] [: | - | – | — | =]          (at most one, e.g. "The answer is:",
                                                                          "Label -", "Final answer:", "Response:")
    CLOSE     := closing ) ] } quotes or markdown * _ `
    continuation := nothing, or anything that passes the five checks below

So the label must come first; only the preamble, decoration and special tokens may precede it. After the label
(and its closing brackets, quotes and bold markers), the reply is INVALID when

1. **an alternative follows**: ``/``, ``|``, ``\\`` or ``?`` right after the label, or the connective *or*, *nor*,
   *vs* / *versus* (after optional ``, ; : -``): "y or n", "yes/no", "True or False", "SUPPORTS or REFUTES",
   "REFUTES, or maybe NOT_ENOUGH_INFO", "Yes?";
2. **a different label follows right away**, after nothing but spaces, ``, ; : -`` and an optional *and*:
   "yes no", "yes and no", "A, B or C", "A, B, or C.", "y, n"; or after a sentence end (``.``, ``!``, line
   break) when that second label stands bare (nothing but punctuation after it): "SUPPORTS.\\nREFUTES",
   "A.\\nB.\\nC.", "No. Yes.";
3. **the first sentence names a different label**: the text after the label up to the first ``.``, ``!``,
   ``?``, ``;`` or line break must not contain another label's form (of two or more letters) as a word:
   "Yes, they match, no doubt", "REFUTES because it SUPPORTS another claim";
4. **the first sentence hedges**: it contains *maybe*, *perhaps*, *possibly*, *unsure* or *not sure*
   ("SUPPORTS, perhaps", "No, but maybe");
5. **an affirmative label is qualified or negated**: for the labels a set marks ``affirmative`` (``yes`` / ``y``),
   *but* right after the label ("Yes, but ...") or a negation (*not*, *n't*, *no*, *never*, *cannot*, *neither*,
   *nor*, *none*, *nothing*, *nobody*) in the first phrase after it: from the label (``, ; : -`` skipped) up to
   the next ``, ; : . ! ?``, line break or conjunction (and, but, because, since, although, though, while,
   whereas, so, as). "Yes, they are not the same" and "Yes, there is no doubt" are INVALID; "Yes, the records
   describe the same person.", "Yes, they match, although the address is not current" and "Yes. They are not
   identical, but ..." are ``yes``. A negation after *no* / *false* agrees with it ("No, they are not the same"
   is ``no``), and labels such as SUPPORTS or True are not checked: their explanations negate naturally ("True,
   the record does not list ...").

A one-letter form (``y``, ``n``, ``A``, ``B``, ``C``) followed by a space and a word is not a label at all: "A man
did it" and "n The addresses differ" are INVALID (except before *or*/*and*/*nor*, where checks 1 and 2 apply).
For the same reason one-letter forms count in check 2 only, never in check 3: "B, because A is wrong" is ``B``.

What may follow the label: nothing; punctuation; an explanation in the same sentence ("Yes, the records describe
the same person.", "TRUE, the record says so", "(B) because the context says so"); or any further sentences
("REFUTES. The claim is wrong", "SUPPORTS. The evidence supports the claim.", "n\\n\\nExplanation: ..."), which are
not read at all except for check 2's bare second label.

Known costs of the strictness, all documented choices: "Yes, there is no difference" (negation, check 5),
"NOT_ENOUGH_INFO, as the evidence neither supports nor refutes the claim" (labels in the first sentence,
check 3; "NOT_ENOUGH_INFO. The evidence neither ..." is valid) and "Yes, no doubt" (check 2) are INVALID. Within the
studies' 5-10 new tokens such replies are rare; the invalid rate makes every one of them visible.

The study's own rules
---------------------
:func:`study_rule` reproduces the original authors' lenient parsing, for the chapters that report both
(:data:`STUDY_RULES`; original-code.md §2):

* ``entity_resolution``: SQuAD normalisation (lower case, punctuation and articles removed), then the first token
  that is exactly ``y`` or ``n`` anywhere in the reply, else the first ``yes``/``no`` token, else INVALID
  ("The records do not match, n" -> ``n``; "yes/no" -> INVALID because it normalises to "yesno");
* ``fact_checking``: special tokens and every ``.`` removed, white space stripped, then a case-sensitive exact
  match with SUPPORTS / REFUTES / NOT_ENOUGH_INFO ("supports" -> INVALID, "SUPPORTS." -> SUPPORTS);
* ``toxicity``: ``"yes"`` iff the lower-cased reply contains the substring "yes", else ``"no"``, never INVALID
  ("I cannot say yes or no" -> yes, "" -> no).

MedQA true/false and BBQ are this book's additions, not the study's protocol, so they have no study rule.
Tasks expose both rules as ``task.parse(reply, parser="strict" | "study")``.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from .core import INVALID
from .errors import InvalidParameter, check_choice

#: the parsers a task's ``parse`` offers: this module's grammar, or the original study's rule
PARSERS = ("strict", "study")


@dataclass(frozen=True)
class LabelSet:
    """The labels of one task: canonical label -> accepted surface forms (case-insensitive; the canonical label is
    always accepted too). ``affirmative`` labels are contradicted by a negation right after them (check 5)."""

    name: str
    forms: Mapping[str, Sequence[str]]
    affirmative: tuple[str, ...] = ()
    _lookup: dict[str, str] = field(init=False, repr=False, compare=False)
    _start: re.Pattern = field(init=False, repr=False, compare=False)
    _inside: re.Pattern | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.forms:
            raise InvalidParameter(f"label set {self.name!r} has no labels")
        unknown = [a for a in self.affirmative if a not in self.forms]
        if unknown:
            raise InvalidParameter(
                f"affirmative label(s) {unknown} of {self.name!r} are not among its labels {list(self.forms)}"
            )
        lookup: dict[str, str] = {}
        for label, forms in self.forms.items():
            if isinstance(forms, str):
                raise InvalidParameter(f"the forms of label {label!r} must be a sequence of strings, not a string")
            for form in (label, *forms):
                key = _key(form)
                if not key:
                    raise InvalidParameter(f"label {label!r} of {self.name!r} has an empty form {form!r}")
                if lookup.setdefault(key, label) != label:
                    raise InvalidParameter(f"form {form!r} names both {lookup[key]!r} and {label!r}")
        every = sorted(
            {_key_form(f) for label, forms in self.forms.items() for f in (label, *forms)}, key=len, reverse=True
        )
        long = [f for f in every if len(_key(f)) > 1]
        object.__setattr__(self, "_lookup", lookup)
        object.__setattr__(self, "_start", re.compile(_alternation(every), re.IGNORECASE))
        object.__setattr__(self, "_inside", re.compile(_alternation(long), re.IGNORECASE) if long else None)

    @property
    def labels(self) -> tuple[str, ...]:
        """The canonical labels, in the set's order."""
        return tuple(self.forms)

    def canonical(self, form: str) -> str | None:
        """The canonical label a surface form names (any case and separators), or None."""
        return self._lookup.get(_key(form))


def _key(form: str) -> str:
    return re.sub(r"[\s_\-]+", "", form.lower())


def _key_form(form: str) -> str:
    """A form with its separators normalised to single spaces (the unit of the alternation)."""
    return " ".join(re.split(r"[\s_\-]+", form.strip().lower()))


def _alternation(forms: Sequence[str]) -> str:
    parts = [r"[\s_\-]*".join(re.escape(w) for w in form.split(" ")) for form in forms]
    return r"(?<![A-Za-z0-9])(?:" + "|".join(parts) + r")(?![A-Za-z0-9])"


# -- the label sets of the tasks ------------------------------------------------------------------------------
#: entity resolution: the prompt asks for 'y' or 'n'; yes/no are accepted
MATCH_YN = LabelSet("y/n", {"y": ("y", "yes"), "n": ("n", "no")}, affirmative=("y",))
#: toxicity: the prompt asks for yes or no (a bare 'y'/'n' is not what it asked for)
YES_NO = LabelSet("yes/no", {"yes": ("yes",), "no": ("no",)}, affirmative=("yes",))
#: climate fact-checking (Climate-FEVER's labels)
FACT_CHECK = LabelSet(
    "fact-check",
    {
        "SUPPORTS": ("supports",),
        "REFUTES": ("refutes",),
        "NOT_ENOUGH_INFO": ("not enough info", "not enough information"),
    },
)
#: MedQA true/false
TRUE_FALSE = LabelSet("true/false", {"True": ("true",), "False": ("false",)})
#: three-option multiple choice (BBQ)
ABC = LabelSet("A/B/C", {"A": ("a",), "B": ("b",), "C": ("c",)})

# -- the grammar's pieces ------------------------------------------------------------------------------------
_SPECIAL = re.compile(
    r"<\|im_start\|>(?:assistant|user|system)?|<\|[^|<>\s]{1,40}\|>|</?s>|<(?:pad|eos|bos|unk|"
    r"end_of_turn|start_of_turn|end_of_text)>|\[/?INST\]",
    re.IGNORECASE,
)
_QUOTES = "'\"`\u2018\u2019\u201c\u201d\u00ab\u00bb"
_DECOR = re.compile(r"[\s*_#>\u2022\-\u2013\u2014(\[" + _QUOTES + r"]*")
_PREAMBLE = re.compile(
    r"(?:(?:the|my|our)\s+)?(?:(?:correct|final|right|best|predicted)\s+)?"
    r"(?:answer|label|response|classification|prediction|output|verdict|option|choice)(?![A-Za-z0-9])"
    r"(?:\s+(?:is|would\s+be|will\s+be)(?![A-Za-z0-9]))?\s*[:=\-\u2013\u2014]?",
    re.IGNORECASE,
)
_CLOSE = re.compile(r"[)\]}*_" + _QUOTES + r"]*")
_ALTERNATIVE = re.compile(r"\s*[/|\\?]|[\s,;:\-\u2013\u2014]*(?:or|nor|vs|versus)(?![A-Za-z0-9])", re.IGNORECASE)
_GAP = re.compile(r"[\s,;:.!\-\u2013\u2014]*(?:and(?![A-Za-z0-9])[\s,;:\-\u2013\u2014]*)?", re.IGNORECASE)
_BUT = re.compile(r"[\s,;:\-\u2013\u2014]*but(?![A-Za-z0-9])", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?;\n]")
_BARE_AFTER = re.compile(r"[)\]}*_" + _QUOTES + r"]*\s*(?:$|[.,;:!?)\]\n])")
_WORD_AFTER_LETTER = re.compile(r"[ \t]+(?!(?:or|and|nor)(?![A-Za-z0-9]))[A-Za-z0-9]", re.IGNORECASE)
_HEDGE = re.compile(r"(?<![A-Za-z0-9])(?:maybe|perhaps|possibly|unsure|not\s+sure)(?![A-Za-z0-9])", re.IGNORECASE)
_PHRASE_END = re.compile(
    r"[,;:.!?\n]|(?<![A-Za-z0-9])(?:and|but|because|since|although|though|while|whereas|so|"
    r"as)(?![A-Za-z0-9])",
    re.IGNORECASE,
)
_NEGATION = re.compile(
    r"(?<![A-Za-z0-9])(?:not|no|never|cannot|neither|nor|none|nothing|nobody)(?![A-Za-z0-9])"
    r"|n[\u2019']t(?![A-Za-z0-9])",
    re.IGNORECASE,
)


def as_label_set(labels: LabelSet | Mapping[str, Sequence[str]] | Sequence[str]) -> LabelSet:
    """A :class:`LabelSet` from itself, a mapping label -> forms, or a plain sequence of labels."""
    if isinstance(labels, LabelSet):
        return labels
    if isinstance(labels, Mapping):
        return LabelSet("custom", {str(k): v if isinstance(v, str) else tuple(v) for k, v in labels.items()})
    if isinstance(labels, str):
        raise InvalidParameter(
            f"labels must be a LabelSet, a mapping or a sequence of labels, not the string {labels!r}"
        )
    return LabelSet("custom", {str(label): () for label in labels})


def clean_reply(text: object) -> str | None:
    """The reply without special tokens and surrounding white space; None when it is not a string."""
    if not isinstance(text, str):
        return None
    return _SPECIAL.sub(" ", text).strip()


def answer_body(text: object) -> str | None:
    """The reply from where its answer must start: special tokens, leading decoration and one preamble removed
    ("**Answer:** (B) ..." -> "B) ..."); None when the reply is not a string."""
    body = clean_reply(text)
    if body is None:
        return None
    body = body[_DECOR.match(body).end() :]
    preamble = _PREAMBLE.match(body)
    if preamble and preamble.end() > 0:
        body = body[preamble.end() :]
        body = body[_DECOR.match(body).end() :]
    return body


def _standalone(form: str, after: str) -> bool:
    """False for a one-letter form followed by a space and a word ("A man", "n The ..."): an article or an
    initial, not a label."""
    return len(_key(form)) > 1 or not _WORD_AFTER_LETTER.match(after)


def parse_label(text: object, labels: LabelSet | Mapping[str, Sequence[str]] | Sequence[str]) -> str:
    """The canonical label ``text`` answers with, or :data:`~labscale.core.INVALID` (module grammar).

    ``labels`` is a :class:`LabelSet` (:data:`MATCH_YN`, :data:`YES_NO`, :data:`FACT_CHECK`, :data:`TRUE_FALSE`,
    :data:`ABC`), a mapping canonical label -> surface forms, or a sequence of labels."""
    label_set = as_label_set(labels)
    body = answer_body(text)
    if not body:
        return INVALID
    match = label_set._start.match(body)
    if not match:
        return INVALID
    rest = body[match.end() :]
    if not _standalone(match.group(0), rest):
        return INVALID
    label = label_set.canonical(match.group(0))
    rest = rest[_CLOSE.match(rest).end() :]
    if _ALTERNATIVE.match(rest):  # check 1
        return INVALID
    gap = _GAP.match(rest)
    after_gap = rest[gap.end() :]
    after_gap = after_gap[_DECOR.match(after_gap).end() :]
    second = label_set._start.match(after_gap)
    if (
        second
        and label_set.canonical(second.group(0)) != label
        and _standalone(second.group(0), after_gap[second.end() :])
    ):
        sentence_ended = bool(re.search(r"[.!\n]", gap.group(0)))
        if not sentence_ended or _BARE_AFTER.match(after_gap[second.end() :]):  # check 2
            return INVALID
    sentence = _SENTENCE_END.split(rest, maxsplit=1)[0]
    if label_set._inside is not None and any(
        label_set.canonical(m.group(0)) != label for m in label_set._inside.finditer(sentence)
    ):  # check 3
        return INVALID
    if _HEDGE.search(sentence):  # check 4
        return INVALID
    if label in label_set.affirmative:  # check 5
        if _BUT.match(rest):
            return INVALID
        phrase = rest.lstrip(" \t,;:\u2013\u2014-")
        phrase = _PHRASE_END.split(phrase, maxsplit=1)[0]
        if _NEGATION.search(phrase):
            return INVALID
    return label


def _option_key(text: str) -> str:
    strip = string.punctuation + string.whitespace + _QUOTES
    return " ".join(text.strip().strip(strip).lower().split())


_LETTER_THEN_TEXT = re.compile(r"\(?([A-Za-z])[).:]?\s+(\S.*)", re.DOTALL)


def parse_option(text: object, options: Sequence[str], labels: LabelSet = ABC) -> str:
    """A multiple-choice reply: :func:`parse_label` over the option letters (``labels``), and also a reply whose
    first line is exactly one option's text ("The grandson.") or a letter followed by that option's text ("A. The
    grandfather", "B The grandson", "A\\nThe grandfather"); INVALID when the letter and the text name different
    options ("A. The grandson" when the grandson is B)."""
    if len(options) != len(labels.labels):
        raise InvalidParameter(f"{len(options)} options for the {len(labels.labels)} labels {list(labels.labels)}")
    body = answer_body(text)
    if not body:
        return INVALID
    by_text = {_option_key(o): labels.labels[i] for i, o in enumerate(options)}
    match = _LETTER_THEN_TEXT.match(body)
    if match and labels.canonical(match.group(1)) is not None:
        named = by_text.get(_option_key(match.group(2).splitlines()[0]))
        if named is not None:  # the letter and the text must agree
            return named if named == labels.canonical(match.group(1)) else INVALID
    letter = parse_label(text, labels)
    if letter != INVALID:
        return letter
    return by_text.get(_option_key(body.splitlines()[0]), INVALID)


# -- the study's rules -----------------------------------------------------------------------------------------
def study_entity_resolution(text: object) -> str:
    """The original ``clean_response``: the first ``y``/``n`` token anywhere, else the first ``yes``/``no``."""
    if not isinstance(text, str):
        return INVALID
    from .metrics import normalize_answer

    tokens = normalize_answer(text).split()
    for token in tokens:
        if token in ("y", "n"):
            return token
    for token in tokens:
        if token in ("yes", "no"):
            return token[0]
    return INVALID


def study_fact_checking(text: object) -> str:
    """The original rule: EOS tokens and every ``.`` removed, then a case-sensitive exact match."""
    if not isinstance(text, str):
        return INVALID
    answer = _SPECIAL.sub("", text).replace(".", "").strip()
    return answer if answer in FACT_CHECK.labels else INVALID


def study_toxicity(text: object) -> str:
    """The original rule: toxic (``"yes"``) iff the lower-cased reply contains "yes"; never INVALID."""
    return "yes" if "yes" in str(text).lower() else "no"


#: task name -> the original authors' parsing rule
STUDY_RULES: dict[str, Callable[[object], str]] = {
    "entity_resolution": study_entity_resolution,
    "fact_checking": study_fact_checking,
    "toxicity": study_toxicity,
}


def study_rule(task: str, text: object) -> str:
    """``text`` parsed by the study's rule for ``task`` (see the module docstring); an
    :class:`~labscale.errors.InvalidParameter` naming the tasks that have one otherwise."""
    if task not in STUDY_RULES:
        raise InvalidParameter(
            f"task {task!r} has no study parsing rule (the study did not run it as a "
            f"classification task); tasks with one: {', '.join(map(repr, STUDY_RULES))}"
        )
    return STUDY_RULES[task](text)


def parse_reply(task: str, text: object, labels: LabelSet, parser: str = "strict") -> str:
    """``text`` parsed for ``task`` by the strict grammar (``parser="strict"``, over ``labels``) or by the
    study's rule (``parser="study"``)."""
    check_choice("parser", parser, PARSERS)
    return parse_label(text, labels) if parser == "strict" else study_rule(task, text)


__all__ = [
    "ABC",
    "FACT_CHECK",
    "MATCH_YN",
    "PARSERS",
    "STUDY_RULES",
    "TRUE_FALSE",
    "YES_NO",
    "LabelSet",
    "answer_body",
    "as_label_set",
    "clean_reply",
    "parse_label",
    "parse_option",
    "parse_reply",
    "study_rule",
]
