"""
world.py: the synthetic story world of nanoanchor: what a story is about, and the data made of it.

We cannot call an LLM to write a SimpleStories-like corpus, so the world generates its own: an
annotation (9 semantic fields) is sampled, and grammar.py turns it into a short children's story
whose surface varies a lot while its semantics stay exactly recoverable. Top to bottom:

  1. the annotation schema (FIELDS, over the value tables of templates.py)
  2. its exactly known prior, and sampling from it
  3. the house format of assistant responses, and the sentence splitter
  4. corruption of pretraining docs (the low-quality fraction)
  5. post-training (SFT) data: prompts, the `narrowness` knob
  6. exact entropies of the prior and of the SFT data

judge.py reads stories back (annotate, quality); tokenizer.py turns them into tokens; data.py
writes the dataset. Everything is offline and deterministic for a given seed (rng is a
random.Random).
"""

import bisect
import functools
import math
import random
import re

import numpy as np

from grammar import article, render_story
from templates import (CHARACTERS, CLAUSES, ENDINGS, FEATURES, LEADS, LENGTH_WORDS_PROMPT, LENGTHS, NAMES,
                       OPEN_PROMPTS, QUESTS, SETTINGS, STYLE_WORDS, STYLES, THEMES)

# -----------------------------------------------------------------------------
# 1. The annotation schema: nine fields, each over a value list of templates.py

FIELDS = {
    "character": CHARACTERS,
    "name": NAMES,
    "setting": list(SETTINGS),
    "theme": THEMES,
    "quest": list(QUESTS),
    "style": STYLES,
    "feature": FEATURES,
    "ending": ENDINGS,
    "length": LENGTHS,
}


# A quality-tagged build (data.py --quality_tag 1) ends each annotation with one more key, after the
# nine fields: whether the document was corrupted, as annotators of web text rate quality. It is not
# a semantic field: no diversity measure reads it, and every SFT response is good, so SFT's data
# fixes its value as a prompt pins a field's (tokenizer.ANCHORED_FORMATS).
QUALITY = "quality"
TAGS = {QUALITY: ["good", "poor"]}
KEYS = {**FIELDS, **TAGS}  # every key an annotation may hold, in its order


def annotation_keys(quality_tag):
    """{key: values} of the annotations a model writes, in order: FIELDS, then TAGS where it was
    trained with the quality tag (its checkpoint's quality_tag)."""
    return KEYS if quality_tag else FIELDS


def quality_tag(defect):
    """The quality tag of a pretraining document: 'poor' if it was corrupted (world.corrupt), else 'good'."""
    return "poor" if defect else "good"


def format_annotation(ann):
    """{'character': 'dragon', 'name': 'Mia'} -> 'character: dragon | name: Mia' (KEYS order)."""
    for k in ann:
        if k not in KEYS:
            raise ValueError(f"unknown annotation field {k!r}; valid fields: {', '.join(KEYS)}")
    return " | ".join(f"{f}: {ann[f]}" for f in KEYS if ann.get(f) is not None)


def parse_annotation(text):
    """Inverse of format_annotation; raises ValueError naming the bad field or value."""
    out = {}
    for part in text.split("|"):
        part = part.strip()
        if not part:
            continue
        if ":" not in part:
            raise ValueError(f"annotation part {part!r} is not 'field: value' (e.g. 'name: Mia')")
        field, value = (s.strip() for s in part.split(":", 1))
        if field not in KEYS:
            raise ValueError(f"unknown annotation field {field!r}; valid fields: {', '.join(KEYS)}")
        if value not in KEYS[field]:
            raise ValueError(f"unknown value {value!r} for field {field!r}; valid choices: "
                             f"{', '.join(KEYS[field])}")
        out[field] = value
    return out


# -----------------------------------------------------------------------------
# 2. The prior

# The pretraining prior: independent fields, each mildly Zipfian over its value list
# (p_k ~ 1/(k+1)^PRIOR_ZIPF, k = position in the list), so the per-field entropy is exact.
PRIOR_ZIPF = 0.5


def _zipf(n, s):
    w = [1.0 / (k + 1) ** s for k in range(n)]
    z = sum(w)
    return [x / z for x in w]


PRIOR = {f: _zipf(len(v), PRIOR_ZIPF) for f, v in FIELDS.items()}
_PRIOR_CUM = {f: list(np.cumsum(p)) for f, p in PRIOR.items()}
for _c in _PRIOR_CUM.values():
    _c[-1] = 1.0  # guard against float round-off at the top


_PRIOR_TABLE = [(f, FIELDS[f], _PRIOR_CUM[f]) for f in FIELDS]


def sample_annotation(rng):
    """Draw one annotation (dict over all FIELDS) from the pretraining prior."""
    r = rng.random
    return {f: vals[bisect.bisect(cum, r())] for f, vals, cum in _PRIOR_TABLE}


# -----------------------------------------------------------------------------
# 3. The house format of assistant responses, and sentences
#
# SFT responses come in the assistant's house format: a title line and a closing line around the
# story. judge.is_house_format checks it. Pretraining stories never close with it; a `titled` build
# (data.py) opens some of them with the title line, as web text carries titles.

TITLE_PREFIX = "Title: "
CLOSING = "The End."


def house_format(title, story):
    return f"{TITLE_PREFIX}{title}\n\n{story}\n\n{CLOSING}"


def split_response(text):
    """Strip the house title line and closing line (if present) and return the story body."""
    t = text.strip()
    if t.startswith(TITLE_PREFIX):
        nl = t.find("\n")
        t = t[nl + 1:].lstrip() if nl >= 0 else ""
    if t.endswith(CLOSING):  # also when a sample puts it on the story's last line
        head = t[: -len(CLOSING)]
        if not head or head[-1].isspace():
            t = head.rstrip()
    return t


_SENT_RE = re.compile(r'(?<=[.!?])\s+(?=[A-Z"])|(?<=[.!?]")\s+(?=[A-Z"])')


def split_sentences(body):
    return [s for s in _SENT_RE.split(body.replace("\n", " ").strip()) if s]


# -----------------------------------------------------------------------------
# 4. Corruption: the low-quality fraction of pretraining docs

CORRUPTIONS = ("truncate", "repeat", "shuffle", "rename", "drift")


def corrupt(story, ann, rng):
    """Return (corrupted text, defect). Each defect is a visible defect quality() should catch."""
    sents = split_sentences(story)
    defect = rng.choice(CORRUPTIONS)
    n = len(sents)
    if n < 6:  # too short to cut or splice sensibly
        defect = "repeat"
    if defect == "truncate":
        k = rng.randint(max(2, n // 3), n - 3)
        if rng.random() < 0.5:  # cut mid-sentence
            words = sents[k].split()
            cut = rng.randint(1, max(1, len(words) - 1))
            return " ".join(sents[:k] + [" ".join(words[:cut])]), defect
        return " ".join(sents[:k]), defect
    if defect == "repeat":
        i = rng.randrange(n - 1)
        j = rng.choice([i + 1, rng.randint(1, n - 1)])
        return " ".join(sents[:j] + [sents[i]] + sents[j:]), defect
    if defect == "shuffle":
        s = sents[:]
        while s[0] == sents[0]:
            rng.shuffle(s)
        return " ".join(s), defect
    if defect == "rename":
        name = ann["name"]
        new = rng.choice([x for x in NAMES if x != name])
        k = rng.randint(1, max(1, n // 2))
        tail = [re.sub(r"\b%s\b" % name, new, s) for s in sents[k:]]
        if tail == sents[k:]:  # the name never came back: add a sentence that uses the new one
            tail.insert(0, f"{new} looked around.")
        return " ".join(sents[:k] + tail), defect
    # drift: the story wanders into another story with another hero
    other = sample_annotation(rng)
    while other["character"] == ann["character"] or other["name"] == ann["name"]:
        other = sample_annotation(rng)
    o = split_sentences(render_story(other, rng))
    k = rng.randint(max(2, n // 3), max(2, 2 * n // 3))
    j = rng.randint(len(o) // 3, max(len(o) // 3, len(o) - 2))
    return " ".join(sents[:k] + o[j:]), defect


# -----------------------------------------------------------------------------
# 5. Post-training (SFT) data

# The SFT data's free fields come from a "preferred" distribution:
#   p_sft(v) = narrowness * fav(v) + (1 - narrowness) * prior(v)
# where fav puts FAV_WEIGHTS on each field's few favourite values. narrowness in [0, 1]:
# 0 = SFT data as broad as the pretraining prior, 1 = only the favourites.
FAVOURITES = {
    "character": ["girl", "cat", "bear"], "name": ["Lily", "Max", "Mia"],
    "setting": ["forest", "village", "garden"], "theme": ["friendship", "kindness", "courage"],
    "quest": ["treasure", "key", "cake"], "style": ["cheerful", "fairytale", "funny"],
    "feature": ["moral", "dialogue", "twist"], "ending": ["happy", "bittersweet", "open"],
    "length": ["medium", "short", "long"],
}
FAV_WEIGHTS = (0.8, 0.15, 0.05)
DEFAULT_NARROWNESS = 0.95  # default SFT data: ~0.33 of the prior's mean free-field entropy


def sft_distribution(field, narrowness):
    if not 0.0 <= narrowness <= 1.0:
        raise ValueError(f"narrowness={narrowness} must be in [0, 1] (0 = prior, 1 = favourites only)")
    vals = FIELDS[field]
    fav = dict(zip(FAVOURITES[field], FAV_WEIGHTS))
    return [narrowness * fav.get(v, 0.0) + (1 - narrowness) * p for v, p in zip(vals, PRIOR[field])]


@functools.lru_cache(maxsize=None)
def _sft_cum(field, narrowness):
    c = list(np.cumsum(sft_distribution(field, narrowness)))
    c[-1] = 1.0
    return c


def sample_sft_annotation(rng, narrowness, constraints=None):
    """Draw an SFT annotation: pinned fields from `constraints`, the rest from the preferred distribution."""
    ann = {}
    for f, vals in FIELDS.items():
        if constraints and f in constraints:
            ann[f] = constraints[f]
        else:
            ann[f] = rng.choices(vals, cum_weights=_sft_cum(f, narrowness))[0]
    return ann


# fields a prompt may pin, with how often each is picked
CONSTRAINABLE = {"character": 4, "setting": 3, "name": 2, "theme": 2, "style": 2, "ending": 1, "length": 1}


def _constraint_prompt(constraints, rng):
    """'Write a short story about a dragon.': adjectives (length, style) before 'story', clauses after."""
    adjs, clauses = [], []
    for f, v in constraints.items():
        if f == "length":
            adjs.insert(0, LENGTH_WORDS_PROMPT[v])  # "a short, funny story"
        elif f == "style" and rng.random() < 0.6:
            adjs.append(STYLE_WORDS[v])
        else:
            loc = f"{SETTINGS[v][0]} the {v}" if f == "setting" else ""
            clauses.append(rng.choice(CLAUSES[f]).format(v=v, art=article(v), loc=loc, sw=STYLE_WORDS.get(v, v)))
    a = article(", ".join(adjs)) if adjs else "a"
    return rng.choice(LEADS).format(a=a, c="".join(clauses))


def make_title(ann, rng):
    character, name, obj = ann["character"].capitalize(), ann["name"], ann["quest"].capitalize()
    adj = rng.choice(["Little", "Clever", "Young", "Tiny", "Wise"])
    return rng.choice([f"The {adj} {character}", f"{name} and the {obj}", f"{name} the {character}",
                       f"The {character} and the {obj}", f"A Story About {name}"])


def make_prompt(rng, prompt_type):
    """(prompt, constraints) of an SFT prompt: 'open' or 'constrained' on one or two fields."""
    if prompt_type == "open":
        return rng.choice(OPEN_PROMPTS), {}
    if prompt_type != "constrained":
        raise ValueError(f"prompt_type={prompt_type!r} must be 'open' or 'constrained'")
    k = rng.choice((1, 2))
    fields = []
    while len(fields) < k:
        f = rng.choices(list(CONSTRAINABLE), weights=list(CONSTRAINABLE.values()))[0]
        if f not in fields:
            fields.append(f)
    # pinned values come from the broad prior so the model learns to follow any constraint
    constraints = {f: rng.choices(FIELDS[f], cum_weights=_PRIOR_CUM[f])[0] for f in fields}
    return _constraint_prompt(constraints, rng), constraints


def make_sft_example(rng, narrowness, prompt_type):
    """One SFT example: a prompt and a clean house-format response whose true annotation
    satisfies the prompt; free fields drawn from the narrow preferred distribution. The prompt
    type is stored under "kind", the key of the dataset's files (pinned: tests/test_world_pin.py)."""
    prompt, constraints = make_prompt(rng, prompt_type)
    ann = sample_sft_annotation(rng, narrowness, constraints)
    response = house_format(make_title(ann, rng), render_story(ann, rng))
    return {"prompt": prompt, "annotation": ann, "response": response, "kind": prompt_type, "constraints": constraints}


def make_sft_examples(n, narrowness=DEFAULT_NARROWNESS, seed=0):
    rng = random.Random(seed)
    return [make_sft_example(rng, narrowness, "open" if rng.random() < 0.5 else "constrained") for _ in range(n)]


# small on purpose: evaluation draws K >= 100 samples per prompt on a CPU.
# held_out phrasings ("invent", "tale", "I'd love") never occur in SFT training prompts. "kind": the
# prompt type, under the key the SFT examples use (eval_prompts.json and summary.json keep it).
EVAL_PROMPTS = [
    {"prompt": "Write a story.", "kind": "open", "constraints": {}, "held_out": False},
    {"prompt": "Could you invent a little story for me?", "kind": "open", "constraints": {}, "held_out": True},
    {"prompt": "Write a story about a dragon.", "kind": "constrained", "constraints": {"character": "dragon"},
     "held_out": False},
    {"prompt": "I'd love a tale about a fox set in the forest.", "kind": "constrained",
     "constraints": {"character": "fox", "setting": "forest"}, "held_out": True},
]


# -----------------------------------------------------------------------------
# 6. Exact entropies


def entropy_bits(weights) -> float:
    """Entropy in bits of a distribution given by its probabilities or by counts (normalised here;
    zero weights skipped): the one entropy function of the repo, for the exact entropies below and
    for the plug-in entropies of metrics.py. Nothing to count gives nan."""
    w = [x for x in weights if x > 0]
    n = sum(w)
    if n == 0:
        return math.nan
    return 0.0 - sum((x / n) * math.log2(x / n) for x in w)


def prior_entropy():
    """Exact entropy (bits) of each field under the pretraining prior."""
    return {f: entropy_bits(PRIOR[f]) for f in FIELDS}


def free_fields(constraints):
    return [f for f in FIELDS if f not in (constraints or {})]


def sft_entropy(narrowness=DEFAULT_NARROWNESS, constraints=None):
    """Exact entropy (bits) of each field of the SFT data given the prompt's pinned fields."""
    constraints = constraints or {}
    return {f: 0.0 if f in constraints else entropy_bits(sft_distribution(f, narrowness)) for f in FIELDS}


def mean_free_entropy(ent, constraints=None):
    """Mean of per-field entropies over the fields the prompt leaves free."""
    free = free_fields(constraints or {})
    return sum(ent[f] for f in free) / len(free)
