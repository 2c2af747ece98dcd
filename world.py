"""
world.py: the synthetic story world of nanoanchor.

We cannot call an LLM to write a SimpleStories-like corpus, so this file IS the generator:
a procedural grammar turns a sampled annotation (9 semantic fields) into a short children's
story whose surface varies a lot while its semantics stay exactly recoverable. Top to bottom:

  1. the annotation schema (FIELDS) and its exactly known prior
  2. the grammar: render_story(annotation, rng), drawing on the tables in templates.py
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

from templates import (CLAUSES, ENDING_SENTENCES, FEATURE_SENTENCES, FILLERS, INTRO_ADJS, LEADS, LENGTH_WORDS_PROMPT,
                       OPEN_BODY, OPEN_PREFIX, OPEN_PROMPTS, QUEST_EXTRA, QUEST_INTRO, SETTING_GENERIC, SETTING_HERO,
                       SETTING_SPECIFIC, STYLE_SENTENCES, STYLE_WORDS, THEME_GENERIC, THEME_SPECIFIC)

# -----------------------------------------------------------------------------
# 1. Annotation schema and prior

CHARACTERS = [
    "dragon", "fox", "robot", "girl", "boy", "bear", "rabbit", "owl", "cat", "dog", "mouse",
    "wizard", "princess", "knight", "pirate", "frog", "turtle", "lion", "tiger", "elephant",
    "monkey", "penguin", "duck", "horse", "unicorn", "giant", "witch", "ghost", "squirrel",
    "wolf", "deer", "whale",
]
SHE_NAMES = [
    "Mia", "Lily", "Zoe", "Ava", "Ella", "Nora", "Ruby", "Lucy", "Chloe", "Ivy", "Maya", "Luna",
    "Rosa", "Emma", "Hazel", "Anna", "Clara", "Sara", "Iris", "Elsa", "Tara", "Nina", "Lena",
    "Alma", "Gina", "Wren", "Ada", "Rita", "Yara", "Dara", "Pia", "Kira",
]
HE_NAMES = [
    "Max", "Leo", "Sam", "Ben", "Finn", "Jack", "Tom", "Oscar", "Theo", "Hugo", "Noah", "Eli",
    "Otto", "Liam", "Owen", "Felix", "Jonah", "Milo", "Arlo", "Omar", "Kai", "Ravi", "Ezra",
    "Luca", "Toby", "Jude", "Ivan", "Sven", "Bruno", "Nico", "Rex", "Igor",
]
# interleave so the (mildly Zipfian) prior does not favour one pronoun
NAMES = [n for pair in zip(SHE_NAMES, HE_NAMES) for n in pair]

# setting keyword -> (preposition, adjectives). The keyword itself is the annotator's cue.
SETTINGS = {
    "forest": ("in", ["green", "deep", "quiet"]), "desert": ("in", ["hot", "sandy", "wide"]),
    "village": ("in", ["small", "quiet", "little"]), "castle": ("in", ["old", "tall", "grey"]),
    "beach": ("on", ["long", "sandy", "windy"]), "jungle": ("in", ["green", "wild", "warm"]),
    "city": ("in", ["big", "busy", "noisy"]), "island": ("on", ["small", "far", "green"]),
    "mountain": ("on", ["tall", "cold", "high"]), "cave": ("in", ["deep", "cold", "quiet"]),
    "garden": ("in", ["green", "little", "busy"]), "farm": ("on", ["old", "big", "busy"]),
    "lake": ("by", ["blue", "still", "wide"]), "river": ("by", ["wide", "fast", "cold"]),
    "meadow": ("in", ["green", "wide", "quiet"]), "swamp": ("in", ["muddy", "wet", "warm"]),
    "ocean": ("in", ["deep", "blue", "wide"]), "moon": ("on", ["far", "grey", "quiet"]),
    "school": ("at", ["little", "old", "busy"]), "library": ("in", ["old", "quiet", "big"]),
    "market": ("at", ["busy", "old", "noisy"]), "harbor": ("at", ["busy", "windy", "old"]),
    "valley": ("in", ["green", "quiet", "wide"]), "volcano": ("near", ["old", "tall", "hot"]),
    "park": ("in", ["big", "green", "little"]), "orchard": ("in", ["old", "green", "quiet"]),
}
THEMES = [
    "friendship", "courage", "kindness", "honesty", "sharing", "patience", "curiosity",
    "teamwork", "forgiveness", "hope", "family", "gratitude", "perseverance", "humility",
    "generosity", "responsibility",
]
# quest -> (goals: to-infinitive phrases, done: past success predicate, fail: past failure predicate)
QUESTS = {
    "treasure": (["find a hidden treasure", "dig up an old treasure"], "found the hidden treasure", "never found the treasure"),
    "key": (["find a lost key", "look for a lost key"], "found the lost key", "never found the lost key"),
    "cake": (["bake a big cake", "make a cake for a party"], "baked a wonderful cake", "burned the cake"),
    "boat": (["build a little boat", "make a boat out of sticks"], "built the little boat", "never finished the boat"),
    "star": (["catch a falling star", "find a fallen star"], "caught the falling star", "never caught the star"),
    "map": (["follow an old map", "read a secret map"], "followed the map to the end", "lost the map"),
    "egg": (["bring a lost egg home", "keep a small egg safe"], "brought the egg back safely", "could not save the egg"),
    "bridge": (["fix a broken bridge", "build a new bridge"], "fixed the bridge", "could not fix the bridge"),
    "song": (["learn a new song", "sing a song for everyone"], "learned the whole song", "forgot the song"),
    "kite": (["fly a red kite", "fix a torn kite"], "flew the kite high", "lost the kite"),
    "letter": (["deliver an important letter", "send a letter far away"], "delivered the letter", "lost the letter"),
    "flower": (["find a rare flower", "grow a blue flower"], "found the rare flower", "never found the flower"),
    "crown": (["find a lost crown", "return the king's crown"], "found the lost crown", "never found the crown"),
    "lamp": (["light an old lamp", "find a lost lamp"], "lit the old lamp", "could not light the lamp"),
    "seed": (["plant a tiny seed", "grow a seed into a tree"], "grew the seed into a tree", "never saw the seed grow"),
    "clock": (["fix a broken clock", "wind an old clock"], "fixed the old clock", "could not fix the clock"),
    "shell": (["find a shiny shell", "pick up a pink shell"], "found the shiny shell", "never found the shell"),
    "feather": (["find a blue feather", "catch a floating feather"], "found the blue feather", "never found the feather"),
}
STYLES = ["cheerful", "fairytale", "funny", "adventure", "bedtime", "mystery", "spooky", "poetic"]
FEATURES = ["moral", "dialogue", "twist", "flashback", "thoughts", "sounds", "questions", "dream"]
ENDINGS = ["happy", "bittersweet", "open", "sad"]
LENGTHS = ["medium", "short", "long"]
LENGTH_WORDS = {"short": (60, 99), "medium": (100, 159), "long": (160, 240)}  # body word counts

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


def format_annotation(ann):
    """{'character': 'dragon', 'name': 'Mia'} -> 'character: dragon | name: Mia' (FIELDS order)."""
    for k in ann:
        if k not in FIELDS:
            raise ValueError(f"unknown annotation field {k!r}; valid fields: {', '.join(FIELDS)}")
    return " | ".join(f"{f}: {ann[f]}" for f in FIELDS if ann.get(f) is not None)


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
        if field not in FIELDS:
            raise ValueError(f"unknown annotation field {field!r}; valid fields: {', '.join(FIELDS)}")
        if value not in FIELDS[field]:
            raise ValueError(f"unknown value {value!r} for field {field!r}; valid choices: "
                             f"{', '.join(FIELDS[field])}")
        out[field] = value
    return out


# -----------------------------------------------------------------------------
# 2. The grammar

def _article(word):
    return ("an " if word[0] in "aeio" else "a ") + word


def _expand(template):
    """'A [big|tall] rock.' -> ['A big rock.', 'A tall rock.']"""
    parts = re.split(r"\[([^\]]*)\]", template)
    out = [""]
    for i, p in enumerate(parts):
        out = [o + x for o in out for x in (p.split("|") if i % 2 else [p])]
    return out


def _pool(prefix, templates):
    """A template pool, flat over variants: [(template id, variant text, uses hero/loc slots?)]."""
    pool = []
    for i, t in enumerate(templates):
        for v in _expand(t):
            assert not v.startswith(("{hero}", "{he}", "{his}", "{him}", "{loc}")), f"{prefix}{i} starts lowercase"
            pool.append((f"{prefix}{i}", v, "ero}" in v or "{loc}" in v))
    return pool


# precomputed pools, so a story costs a few random() calls and str.format_map per sentence
P_OPEN = {s: _pool(f"open/{s}/", ps) for s, ps in OPEN_PREFIX.items()}
P_BODY = _pool("body/", OPEN_BODY)
P_SET_HERO = {s: _pool("set/g", SETTING_HERO) for s in SETTINGS}
P_SET = {s: _pool("set/g", SETTING_GENERIC) + _pool(f"set/{s}", SETTING_SPECIFIC[s]) for s in SETTINGS}
P_QUEST = _pool("quest/i", QUEST_INTRO)
P_QUEST_X = _pool("quest/x", QUEST_EXTRA)
P_FILL = _pool("fill/", FILLERS)
P_STYLE = {s: _pool(f"style/{s}", ts) for s, ts in STYLE_SENTENCES.items()}
P_FEAT = {f: _pool(f"feat/{f}", ts) for f, ts in FEATURE_SENTENCES.items()}
P_THEME = {t: _pool("theme/g", THEME_GENERIC) + _pool(f"theme/{t}", THEME_SPECIFIC[t]) for t in THEMES}
P_END = {e: (_pool(f"end/{e}o", o), _pool(f"end/{e}c", c)) for e, (o, c) in ENDING_SENTENCES.items()}
# optional sentences drawn to reach the target length: (section, weight)
OPTIONAL = (("set", 2), ("quest", 2), ("feat", 3), ("style", 2), ("theme", 1), ("coda", 3), ("fill", 5))
_OPT_TABLE = [name for name, w in OPTIONAL for _ in range(w)]  # uniform index -> weighted section
_OPT_CAP = {"set": 3, "quest": 3, "feat": 3, "style": 3, "theme": 3, "coda": 1, "fill": 40}  # at most, per story
_SHE = set(SHE_NAMES)


def count_templates():
    """Number of distinct sentence templates in the grammar (a variant of one template counts once)."""
    pools = [P_BODY, P_QUEST, P_QUEST_X, P_FILL] + list(P_OPEN.values()) + list(P_STYLE.values()) + \
        list(P_FEAT.values()) + [p for o, c in P_END.values() for p in (o, c)]
    ids = {e[0] for p in pools for e in p} | {e[0] for p in P_SET.values() for e in p} | \
        {e[0] for p in P_THEME.values() for e in p}
    return len(ids)


def _nwords(s):
    return s.count(" ") + 1


def _hero_context(ann, r):
    """The slot values of one story, and the ways to refer to its hero: (ctx, caps, lows, locs)."""
    character, name, place = ann["character"], ann["name"], ann["setting"]
    she = character in ("girl", "princess", "witch") or (character not in ("boy", "wizard") and name in _SHE)
    prep, adjs = SETTINGS[place]
    goals, done, fail = QUESTS[ann["quest"]]
    adj = INTRO_ADJS[int(r() * len(INTRO_ADJS))]
    he = "she" if she else "he"
    ctx = {"Name": name, "kind": character, "a_kind": _article(character), "a_adj": "a " + adj,
           "He": he.capitalize(), "he": he, "his": "her" if she else "his", "him": "her" if she else "him", "place": place,
           "goal": goals[r() < 0.5], "obj": ann["quest"], "done": done, "fail": fail, "theme": ann["theme"]}
    # ways to refer to the hero; the name is favoured so it stays the dominant cue
    caps = [name, name, name, "The " + character, f"The {adj} {character}", ctx["He"]]
    lows = [name, name, "the " + character, f"the {adj} {character}"]
    locs = [f"{prep} the {place}", f"{prep} the {adjs[int(r() * len(adjs))]} {place}"]
    return ctx, caps, lows, locs


def _teller(r, ctx, caps, lows, locs):
    """-> (say, used). say(pool) draws a sentence of one story from an unused template of pool, its
    slots filled in; used holds the template ids already in the story (no sentence repeats).
    A closure rather than a class: it runs ~15 times per story, and cell lookups are cheaper."""
    used = set()

    def say(pool, kind_ref=False):
        """(template id, sentence) from an unused template of pool; None if all are used."""
        for _ in range(4):
            i = int(r() * len(pool))
            tid, text, slots = pool[i]
            if tid not in used:
                break
        else:  # unlucky draws: take the first unused template after the last draw, if any
            for j in range(1, len(pool) + 1):
                tid, text, slots = pool[(i + j) % len(pool)]
                if tid not in used:
                    break
            else:
                return None
        used.add(tid)
        if kind_ref:  # refer to the hero by kind ("the dragon") in this sentence
            ctx["Hero"], ctx["hero"], ctx["loc"] = caps[3], lows[2], locs[r() < 0.5]
        elif slots:  # one uniform draw picks the hero reference and the location phrase (48 combinations)
            k = int(r() * 48)
            ctx["Hero"], ctx["hero"], ctx["loc"] = caps[k % 6], lows[(k // 6) % 4], locs[k >= 24]
        return tid, text.format_map(ctx)

    return say, used


def _skeleton(ann, say, ctx, r):
    """The sentences every story has: opening + intro, setting (naming the kind again), quest, one
    style and one feature sentence (two lines of dialogue), a theme sentence, the ending outcome.
    -> (opening body template id, opening, {section: sentences}, ending sentences)."""
    style, feature = ann["style"], ann["feature"]
    o = P_OPEN[style][int(r() * len(P_OPEN[style]))]
    b = P_BODY[int(r() * len(P_BODY))]
    opening = (o[0], o[1] + ", " + b[1].format_map(ctx))
    feat_pool = P_FEAT[feature]
    sec = {
        "set": [say(P_SET_HERO[ann["setting"]], kind_ref=True)],
        "quest": [say(P_QUEST)],
        "feat": [say(feat_pool)] + ([say(feat_pool)] if feature == "dialogue" else []),
        "style": [say(P_STYLE[style])],
        "theme": [say(P_THEME[ann["theme"]])],
        "coda": [],
        "fill": [],
    }
    ends = [say(P_END[ann["ending"]][0])]
    return b[0], opening, sec, ends


def _grow(ann, say, used, sec, n, r):
    """Add sentences to the sections until the story reaches a target length drawn in its
    length's range (never past the range's end)."""
    place = ann["setting"]
    lo, hi = LENGTH_WORDS[ann["length"]]
    target = lo + int(r() * (hi - lo + 1))
    theme_pool, end_coda = P_THEME[ann["theme"]], P_END[ann["ending"]][1]
    # a second setting, theme and ending sentence whenever they fit (nearly always): two cues per
    # field survive a sloppy model sample better than one
    for sname, pool in (("set", P_SET[place]), ("theme", theme_pool), ("coda", end_coda)):
        x = say(pool)
        if x is not None and n + x[1].count(" ") + 1 <= hi:
            sec[sname].append(x)
            n += x[1].count(" ") + 1
        elif x is not None:
            used.discard(x[0])
    pools = {"set": P_SET[place], "quest": P_QUEST_X, "feat": P_FEAT[ann["feature"]], "style": P_STYLE[ann["style"]],
             "theme": theme_pool, "coda": end_coda, "fill": P_FILL}
    for _ in range(80):  # optional sentences until the target length
        if n >= target:
            break
        sname = _OPT_TABLE[int(r() * len(_OPT_TABLE))]
        ss = sec[sname]
        if len(ss) >= _OPT_CAP[sname]:
            continue
        x = say(pools[sname])
        if x is None:
            continue
        w = x[1].count(" ") + 1
        if n + w > hi:
            used.discard(x[0])
            continue
        ss.append(x)
        n += w


def _order(opening, sec, ends, feature, r):
    """Opening, setting, quest, a shuffled middle, theme, (moral), ending. A twist comes last in
    the middle, a moral after the theme."""
    feats = sec["feat"]
    mid = sec["style"] + sec["fill"] + sec["quest"][2:]
    if feature not in ("moral", "twist"):
        mid += feats
    for i in range(len(mid) - 1, 0, -1):  # Fisher-Yates on r(): cheaper than rng.shuffle
        j = int(r() * (i + 1))
        mid[i], mid[j] = mid[j], mid[i]
    if feature == "twist":
        mid += feats
    sents = [opening] + sec["set"] + sec["quest"][:2] + mid + sec["theme"]
    if feature == "moral":
        sents += feats
    return sents + ends + sec["coda"]


def render_story(ann, rng, record=None):
    """Turn an annotation into a story. Surface varies with rng; semantics are fixed by ann.
    If `record` is a list, the id of every sentence template used is appended to it."""
    r = rng.random
    ctx, caps, lows, locs = _hero_context(ann, r)
    say, used = _teller(r, ctx, caps, lows, locs)
    body_tid, opening, sec, ends = _skeleton(ann, say, ctx, r)
    n = _nwords(opening[1]) + sum(_nwords(s) for ss in sec.values() for _, s in ss) + _nwords(ends[0][1])
    _grow(ann, say, used, sec, n, r)
    sents = _order(opening, sec, ends, ann["feature"], r)
    if record is not None:
        record += [body_tid] + [tid for tid, _ in sents]
    return _paragraphs([s for _, s in sents], ann["length"], r)


def _paragraphs(sents, length, r):
    k = {"short": 1, "medium": 2, "long": 3}[length] + (r() < 0.5)
    k = min(k, max(1, len(sents) // 3))
    cuts = sorted({2 + int(r() * (len(sents) - 3)) for _ in range(k - 1)})
    paras, prev = [], 0
    for c in cuts + [len(sents)]:
        paras.append(" ".join(sents[prev:c]))
        prev = c
    return "\n\n".join(paras)


# -----------------------------------------------------------------------------
# 3. The house format of assistant responses, and sentences
#
# SFT responses (never pretraining stories) come in the assistant's house format: a title line and
# a closing line around the story. judge.is_house_format checks it.

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
            clauses.append(rng.choice(CLAUSES[f]).format(v=v, art=_article(v), loc=loc, sw=STYLE_WORDS.get(v, v)))
    a = _article(", ".join(adjs)) if adjs else "a"
    return rng.choice(LEADS).format(a=a, c="".join(clauses))


def make_title(ann, rng):
    character, name, obj = ann["character"].capitalize(), ann["name"], ann["quest"].capitalize()
    adj = rng.choice(["Little", "Clever", "Young", "Tiny", "Wise"])
    return rng.choice([f"The {adj} {character}", f"{name} and the {obj}", f"{name} the {character}",
                       f"The {character} and the {obj}", f"A Story About {name}"])


def make_prompt(rng, kind):
    """(prompt, constraints) of an SFT prompt: 'open' or 'constrained' on one or two fields."""
    if kind == "open":
        return rng.choice(OPEN_PROMPTS), {}
    if kind != "constrained":
        raise ValueError(f"kind={kind!r} must be 'open' or 'constrained'")
    k = rng.choice((1, 2))
    fields = []
    while len(fields) < k:
        f = rng.choices(list(CONSTRAINABLE), weights=list(CONSTRAINABLE.values()))[0]
        if f not in fields:
            fields.append(f)
    # pinned values come from the broad prior so the model learns to follow any constraint
    constraints = {f: rng.choices(FIELDS[f], cum_weights=_PRIOR_CUM[f])[0] for f in fields}
    return _constraint_prompt(constraints, rng), constraints


def make_sft_example(rng, narrowness, kind):
    """One SFT example: a prompt and a clean house-format response whose true annotation
    satisfies the prompt; free fields drawn from the narrow preferred distribution."""
    prompt, constraints = make_prompt(rng, kind)
    ann = sample_sft_annotation(rng, narrowness, constraints)
    response = house_format(make_title(ann, rng), render_story(ann, rng))
    return {"prompt": prompt, "annotation": ann, "response": response, "kind": kind, "constraints": constraints}


def make_sft_examples(n, narrowness=DEFAULT_NARROWNESS, seed=0):
    rng = random.Random(seed)
    return [make_sft_example(rng, narrowness, "open" if rng.random() < 0.5 else "constrained") for _ in range(n)]


# small on purpose: evaluation draws K >= 100 samples per prompt on a CPU.
# held_out phrasings ("invent", "tale", "I'd love") never occur in SFT training prompts.
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
