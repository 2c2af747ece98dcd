"""
judge.py: reading a text back: the annotator and the quality checker.

annotate(text) recovers the semantic fields of ANY text (a generated story, a house-format
response, a model sample) from its cue words; it is the judge of every diversity metric and says
None (unknown) rather than guess. quality_problem(text) says why a text is not a well-formed story
(None when it is one); is_house_format checks the assistant's title and closing lines. All pure
functions of the text.
"""

import re
from collections import Counter

from templates import (CHARACTERS, ENDING_MARKERS, ENDINGS, FEATURE_MARKERS, NAMES, QUESTS, SETTINGS, STYLE_MARKERS,
                       STYLES, THEME_MARKERS, THEMES)
from world import CLOSING, FIELDS, TITLE_PREFIX, split_response, split_sentences

# -----------------------------------------------------------------------------
# Cue words: word -> (field, value)


def _build_cues():
    """Every cue word of every field value; a word may cue only one (field, value)."""
    cue = {}

    def add(word, field, value):
        w = word.lower()
        assert w not in cue or cue[w] == (field, value), f"cue word {w!r} used by {cue[w]} and {(field, value)}"
        cue[w] = (field, value)
    for c in CHARACTERS:
        add(c, "character", c)
    for n in NAMES:
        add(n, "name", n)
    for s in SETTINGS:
        add(s, "setting", s)
    for q in QUESTS:
        add(q, "quest", q)
    for field, table in (("theme", THEME_MARKERS), ("style", STYLE_MARKERS),
                         ("feature", FEATURE_MARKERS), ("ending", ENDING_MARKERS)):
        for value, words in table.items():
            for w in words:
                add(w, field, value)
    return cue


CUES = _build_cues()
assert set(THEME_MARKERS) == set(THEMES) and set(STYLE_MARKERS) == set(STYLES)
assert set(ENDING_MARKERS) == set(ENDINGS) and len(NAMES) == len(set(NAMES)) == 64


# -----------------------------------------------------------------------------
# The annotator

_WORD_RE = re.compile(r"[a-z]+")


def is_house_format(text):
    """The assistant house format: a first line 'Title: ...' and a last line 'The End.'."""
    lines = text.strip().split("\n")
    return (len(lines) >= 3 and lines[0].startswith(TITLE_PREFIX) and len(lines[0]) > len(TITLE_PREFIX)
            and lines[-1].strip() == CLOSING and any(l.strip() for l in lines[1:-1]))



# lower-case, and every ASCII non-letter becomes a space: then str.split gives the words (fast, all C)
_WORDS_TABLE = str.maketrans({chr(c): " " for c in range(33, 128) if not chr(c).isalpha()})
_CUE_WORDS = frozenset(CUES)


def _cue_counts(body):
    """(field, value) -> number of cue hits in the text."""
    words = Counter(body.lower().translate(_WORDS_TABLE).split())
    counts = {}
    for w in _CUE_WORDS.intersection(words):
        fv = CUES[w]
        counts[fv] = counts.get(fv, 0) + words[w]
    n_quotes = body.count('"') // 2
    if n_quotes:
        counts[("feature", "dialogue")] = n_quotes
    n_q = body.count("?")
    if n_q:
        counts[("feature", "questions")] = n_q
    return counts


def _dominant(counts):
    """field -> dominant value, or None on a tie (we never guess)."""
    best = {}
    for (f, v), c in counts.items():
        b = best.get(f)
        if b is None or c > b[1]:
            best[f] = [v, c, False]
        elif c == b[1]:
            b[2] = True
    return {f: (None if tie else v) for f, (v, c, tie) in best.items()}


def _length_label(n_words):
    if n_words < 30:
        return None
    return "short" if n_words < 100 else "medium" if n_words < 160 else "long"


def annotate(text):
    """Recover the semantic fields of any text (story, house-format response, model sample).
    Each field takes its dominant cue; None where no cue is found or the top cues tie."""
    body = split_response(text)
    dom = _dominant(_cue_counts(body))
    out = {f: dom.get(f) for f in FIELDS}
    out["length"] = _length_label(len(body.split()))
    return out


# -----------------------------------------------------------------------------
# The quality checker

def quality_problem(text):
    """What makes this text not a well-formed story (a few words), or None if it is one. Checks what
    the corruptions break: ending present and last, no repeated sentence, one hero (one name, one
    character, introduced by 'named' in the first sentence), one setting, sane length. House title and
    closing lines are stripped first."""
    body = split_response(text)
    n_words = len(body.split())
    if n_words < 40 or n_words > 300:
        return "length"
    if body[-1:] not in ('.', '!', '"'):
        return "unfinished"
    sents = split_sentences(body)
    if len(sents) < 4:
        return "too few sentences"
    if len(set(sents)) != len(sents):
        return "repeated sentence"
    counts = _cue_counts(body)
    per_field = Counter(f for f, v in counts)
    if per_field["name"] != 1:
        return "not one name"
    if per_field["character"] != 1:
        return "not one kind of hero"
    if per_field["setting"] > 1:
        return "two settings"
    if per_field["ending"] == 0 or per_field["quest"] == 0:
        return "no quest or no ending"
    name = next(v for f, v in counts if f == "name")
    if f"named {name}" not in sents[0] or re.search(r"\b%s\b" % name, body).start() != body.find("named " + name) + 6:
        return "hero not introduced first"
    # ending cues must sit in the last two sentences, and the very last sentence must carry one
    ends = [any(CUES.get(w, ("",))[0] == "ending" for w in _WORD_RE.findall(s.lower())) for s in sents]
    if not ends[-1] or any(ends[:-2]):
        return "ending out of place"
    return None


def quality(text):
    """Is this a well-formed story? (quality_problem says why not.)"""
    return quality_problem(text) is None
