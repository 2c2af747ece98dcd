"""
grammar.py: how the story world tells a story: render_story(annotation, rng) -> text.

A procedural grammar: a story is a skeleton every story has (opening and hero, setting, quest,
one style and one feature sentence, theme, ending) grown with optional sentences until it reaches
a word count drawn in its length's range, then cut into paragraphs. The sentences come from the
tables in templates.py, expanded at import into flat pools; a template is used at most once per
story, and its slots ({Hero}, {loc}, ...) are filled from the annotation. The surface varies a lot
with rng while the annotation stays exactly recoverable (judge.py reads it back).

world.py samples the annotations and builds the SFT data around these stories. Deterministic for
a given rng (a random.Random): tests/test_world_pin.py pins the stories byte for byte.
"""

import re

from templates import (ENDING_SENTENCES, FEATURE_SENTENCES, FILLERS, INTRO_ADJS, LENGTH_WORDS, OPEN_BODY, OPEN_PREFIX,
                       QUEST_EXTRA, QUEST_INTRO, QUESTS, SETTING_GENERIC, SETTING_HERO, SETTING_SPECIFIC, SETTINGS,
                       SHE_NAMES, STYLE_SENTENCES, THEME_GENERIC, THEME_SPECIFIC, THEMES)

# -----------------------------------------------------------------------------
# Template pools

def article(word):
    """'owl' -> 'an owl', 'dragon' -> 'a dragon'."""
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


# -----------------------------------------------------------------------------
# One story

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
    ctx = {"Name": name, "kind": character, "a_kind": article(character), "a_adj": "a " + adj,
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

    def say(pool, character_ref=False):
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
        if character_ref:  # refer to the hero by its character ("the dragon") in this sentence
            ctx["Hero"], ctx["hero"], ctx["loc"] = caps[3], lows[2], locs[r() < 0.5]
        elif slots:  # one uniform draw picks the hero reference and the location phrase (48 combinations)
            k = int(r() * 48)
            ctx["Hero"], ctx["hero"], ctx["loc"] = caps[k % 6], lows[(k // 6) % 4], locs[k >= 24]
        return tid, text.format_map(ctx)

    return say, used


def _skeleton(ann, say, ctx, r):
    """The sentences every story has: opening + intro, setting (naming the character again), quest, one
    style and one feature sentence (two lines of dialogue), a theme sentence, the ending outcome.
    -> (opening body template id, opening, {section: sentences}, ending sentences)."""
    style, feature = ann["style"], ann["feature"]
    o = P_OPEN[style][int(r() * len(P_OPEN[style]))]
    b = P_BODY[int(r() * len(P_BODY))]
    opening = (o[0], o[1] + ", " + b[1].format_map(ctx))
    feat_pool = P_FEAT[feature]
    sec = {
        "set": [say(P_SET_HERO[ann["setting"]], character_ref=True)],
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
