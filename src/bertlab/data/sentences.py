"""Sentence splitting for pre-training corpora: a small regex splitter, no NLTK/spaCy dependency.

`split_sentences` cuts at . ! ? (and CJK stops) followed by a capital, digit or caseless letter, and knows
common abbreviations, initials and decimals.
"""

from __future__ import annotations

import re

# Words that end in "." without ending the sentence. Titles never end one; the "number" ones only
# before a digit ("No. 5", "pp. 12"), since "the answer was no." may well end a sentence.
_TITLES = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "ft", "gen", "col", "lt", "maj", "sgt", "capt",
    "cmdr", "adm", "gov", "sen", "rep", "rev", "hon", "pres", "supt", "insp", "messrs", "mme", "mlle", "vs",
    "cf", "al", "approx", "ca", "esp", "incl", "dept", "univ", "assn", "bros", "inc", "ltd", "co", "corp",
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
})  # fmt: skip
_NUMBER_ABBREVIATIONS = frozenset(
    {"no", "nos", "vol", "vols", "pp", "p", "fig", "figs", "art", "sec", "ch", "eq", "op"}
)
_DOTTED = re.compile(r"(?:[^\W\d_]\.)+[^\W\d_]")  # e.g, i.e, U.S, a.m (the final "." is the candidate)
# A candidate boundary: end punctuation, optional closing quotes/brackets, then whitespace; or CJK stops.
_CANDIDATE = re.compile(r"[.!?]+[\"'”’»)\]]*\s+|[。！？]+")
_OPENERS = "\"'“‘«([¿¡"


def _is_abbreviation(word: str, next_char: str) -> bool:
    """True when `word` + "." is an abbreviation or initial rather than the end of a sentence."""
    word = word.lstrip(_OPENERS)
    low = word.lower()
    if low in _TITLES or _DOTTED.fullmatch(word):
        return True
    if low in _NUMBER_ABBREVIATIONS and next_char.isdigit():
        return True
    # a single capital is an initial ("J. R. R. Tolkien"), at the cost of "World War I. Then"
    return len(word) == 1 and word.isupper()


def split_sentences(text: str) -> list[str]:
    """Cut a paragraph into sentences at . ! ? (and CJK 。！？) followed by a capital or digit."""
    text = text.strip()
    sentences: list[str] = []
    start = 0
    for match in _CANDIDATE.finditer(text):
        end = match.end()
        if end >= len(text):
            break
        punct = match.group()
        if punct[0] not in "。！？":
            rest = text[end : end + 4].lstrip(_OPENERS)
            next_char = rest[:1]
            # a capital, digit or caseless letter (CJK, Arabic...) may start a sentence; lower case may not
            if not (next_char.isdigit() or (next_char.isalpha() and not next_char.islower())):
                continue
            if punct[0] == "." and not punct.startswith(".."):
                before = text[start : match.start()].rsplit(None, 1)
                if before and _is_abbreviation(before[-1], next_char):
                    continue
        sentence = text[start:end].strip()
        if sentence:
            sentences.append(sentence)
        start = end
    last = text[start:].strip()
    if last:
        sentences.append(last)
    return sentences


def paragraph_sentences(text: str) -> list[str]:
    """Sentences of a multi-paragraph text: paragraphs are lines, each split by `split_sentences`."""
    return [s for line in text.splitlines() for s in split_sentences(line)]


__all__ = ["paragraph_sentences", "split_sentences"]
