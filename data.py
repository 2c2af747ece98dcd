"""
data.py: the synthetic story world of nanoanchor.

We cannot call an LLM to write a SimpleStories-like corpus, so this file IS the generator:
a procedural grammar turns a sampled annotation (9 semantic fields) into a short children's
story whose surface varies a lot while its semantics stay exactly recoverable. Top to bottom:

  1. the annotation schema (FIELDS) and its exactly known prior
  2. the grammar: render_story(annotation, rng)
  3. the annotator (annotate) and the quality checker (quality), both pure functions
  4. corruption of pretraining docs (the low-quality fraction)
  5. post-training (SFT) data: prompts, the assistant house format, the `narrowness` knob
  6. exact entropies of the prior and of the SFT data
  7. a byte-level BPE tokenizer saved in tiktoken's rank-file format
  8. THE format function encode_example (ids + loss mask) and prompt_ids
  9. building the dataset on disk (ensure_dataset) and the CLI

Everything is offline and deterministic for a given seed (rng is a random.Random).
"""

import argparse
import base64
import bisect
import functools
import hashlib
import json
import math
import os
import random
import re
import time
from collections import Counter

import numpy as np
import regex
import tiktoken
from tqdm import tqdm

DATA_VERSION = 3  # bump when the generator code changes (edits to the template tables are caught by _grammar_hash)

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
#
# Every semantic field has its own small set of cue words (the character kind, the name after
# "named", the setting keyword, theme words, the quest object, style markers, feature markers,
# ending markers) and NO template uses a cue word of another field. That is what lets the
# annotator (and a tiny model copying the surface) keep the fields apart.
#
# Template slots: {Hero}/{hero} (name, "the dragon", ... re-drawn per sentence), {Name}, {kind},
# {a_kind}, {adj}, {He}/{he}/{his}/{him}, {loc} ("in the hot desert"), {place} ("desert"),
# {goal}, {obj}, {done}, {fail}, {theme}.

INTRO_ADJS = ["little", "young", "small", "clever", "tiny", "quiet", "busy", "proud", "lively", "gentle"]

# "[a|b]" marks alternatives: each template expands (at import) into all its variants, which gives
# surface variety at no cost per story. A template id names the base template, not the variant.
OPEN_PREFIX = {
    "fairytale": ["Once upon a time", "Long, long ago, in an enchanted land", "Once upon a time, in a fairy land",
                  "Long ago, when magic was [everywhere|in the air]"],
    "adventure": ["On a bold and exciting [morning|day]", "At the start of a great adventure",
                  "On a day full of adventure", "On a daring, exciting [day|morning]"],
    "funny": ["On a very silly [morning|day]", "On a funny, wobbly [day|morning]", "In a silly little story",
              "On a day when everything was [funny|silly]"],
    "bedtime": ["At the end of a long, sleepy day", "On a cozy evening, just before bed",
                "When it was almost time for bed", "On a calm and cozy [evening|night]"],
    "mystery": ["On a strange [morning|day]", "On a day full of mystery", "On a strange and puzzling [morning|day]",
                "In a time of [mystery|strange events]"],
    "spooky": ["On a dark and spooky [evening|night]", "When the shadows grew long", "On a creaky, windy night",
               "On an eerie, spooky [evening|night]"],
    "poetic": ["Softly, as the world began to shimmer", "Gently, as silver light touched the earth",
               "Softly, under a silver sky", "As the [morning|evening] shimmered softly"],
    "cheerful": ["On a bright and sunny [morning|day]", "On a cheerful, sunny day", "On a merry [morning|day]",
                 "On a bright and cheerful [day|morning]"],
}
OPEN_BODY = [
    "there was {a_adj} {kind} named {Name}.",
    "there lived {a_kind} named {Name}.",
    "{a_adj} {kind} named {Name} woke up [early|with a big smile|before everyone else].",
    "{a_kind} named {Name} was looking for something to do.",
    "there was {a_kind} named {Name} who loved to [explore|play|help others|sing].",
    "{a_adj} {kind} named {Name} set out from home.",
    "{a_kind} named {Name} opened {his} eyes and got up.",
    "{a_adj} {kind} named {Name} [stretched|looked out of the window] and smiled.",
]

# setting sentences with a hero slot and {loc}: the first one always refers to the hero by kind
SETTING_HERO = [
    "{Hero} lived {loc}.",
    "{Hero} loved to play {loc}.",
    "Every morning, {hero} went for a walk {loc}.",
    "{Hero} had spent {his} whole life {loc}.",
    "Many animals lived {loc}, but {hero} was special.",
    "{Hero} [made|built] a little home {loc}.",
    "[Most days|Every day], {hero} could be found {loc}.",
]
SETTING_GENERIC = SETTING_HERO + [
    "Life {loc} was never boring.",
    "It was a [fine|warm|cool] day {loc}.",
    "{Hero} knew every corner of the {place}.",
    "Nothing ever stayed the same {loc}.",
    "The {place} was {Name}'s favorite place.",
    "There was always something to see {loc}.",
]
SETTING_SPECIFIC = {
    "forest": ["[Tall|Old] trees grew all over the forest.", "The forest smelled of pine and moss.",
               "Little paths ran between the trees of the forest."],
    "desert": ["The sand in the desert was warm and gold.", "Hardly any rain fell in the desert.",
               "A few cactus plants grew in the desert."],
    "village": ["The village had a well and ten small houses.", "Everyone in the village knew each other.",
                "Smoke rose from the chimneys of the village."],
    "castle": ["The castle had high towers and a big gate.", "Long halls ran through the castle.",
               "Flags waved on top of the castle."],
    "beach": ["Waves rolled onto the beach all day.", "The beach was covered in warm sand.",
              "Crabs ran sideways along the beach."],
    "jungle": ["Vines hung from every tree in the jungle.", "Parrots called loudly in the jungle.",
               "The jungle was hot and full of life."],
    "city": ["The city was full of cars and tall buildings.", "Busy streets crossed the city.",
             "The lights of the city never went out."],
    "island": ["The island was small and green.", "Water was all around the island.",
               "Palm trees grew on the island."],
    "mountain": ["Snow sat on top of the mountain.", "The path up the mountain was steep.",
                 "From the mountain, you could see very far."],
    "cave": ["Water dripped from the roof of the cave.", "The cave was cool and full of echoes.",
             "Shiny rocks lined the walls of the cave."],
    "garden": ["Rows of carrots grew in the garden.", "The garden was full of bees.",
               "Tomatoes and beans grew in the garden."],
    "farm": ["Cows and sheep lived on the farm.", "The farm had a red barn.", "Hay was piled high on the farm."],
    "lake": ["The water of the lake was calm and clear.", "Fish swam in the lake.",
             "Reeds grew along the edge of the lake."],
    "river": ["The river ran fast over the stones.", "A small path followed the river.",
              "The river went all the way to the sea."],
    "meadow": ["Tall grass waved in the meadow.", "The meadow was full of buzzing bees.",
               "Butterflies flew across the meadow."],
    "swamp": ["The swamp was wet and full of mud.", "Reeds grew tall in the swamp.",
              "Bubbles rose from the water of the swamp."],
    "ocean": ["The ocean was wide and full of fish.", "Big waves moved across the ocean.",
              "The ocean was very deep and very blue."],
    "moon": ["The moon was grey and covered in dust.", "From the moon, the earth looked small and blue.",
             "There was no wind at all on the moon."],
    "school": ["The school had a big yard and many desks.", "A bell rang at the school every hour.",
               "Children learned to read at the school."],
    "library": ["The library was full of old books.", "Everyone had to be quiet in the library.",
                "Tall shelves filled the library."],
    "market": ["The market was full of fruit and bread.", "People sold hats and pots at the market.",
               "The market was loud and busy."],
    "harbor": ["Ships came and went in the harbor.", "The harbor smelled of salt and fish.",
               "Ropes and nets lay all over the harbor."],
    "valley": ["The valley lay between two tall hills.", "A small stream ran through the valley.",
               "The valley was green all year."],
    "volcano": ["Smoke rose from the top of the volcano.", "The ground near the volcano was warm.",
                "Black rocks lay all around the volcano."],
    "park": ["The park had swings and a big slide.", "Benches stood all around the park.",
             "Children played ball in the park."],
    "orchard": ["Apples hung from every tree in the orchard.", "The orchard was full of fruit trees.",
                "Pears and plums grew in the orchard."],
}

QUEST_INTRO = [
    "One day, {hero} wanted to {goal}.",
    "{Hero} had one big wish: to {goal}.",
    "{Hero} decided to {goal}.",
    "More than anything, {hero} wanted to {goal}.",
    "{Hero} had a plan to {goal}.",
    "Today, {hero} would try to {goal}.",
    "{Hero} made up {his} mind to {goal}.",
    "It was time for {hero} to {goal}.",
    "[That morning|That day], {hero} set off to {goal}.",
    "{Hero} really wanted to {goal}.",
]
QUEST_EXTRA = [
    "The {obj} was very important to {Name}.",
    "{Hero} could not stop talking about the {obj}.",
    "Nothing mattered more than the {obj}.",
    "{Hero} kept the {obj} in mind all day.",
    "It would not be easy, but the {obj} was worth it.",
    "Everyone had heard about the {obj}.",
    "{Hero} [talked|sang] about the {obj} all the time.",
    "The {obj} was all {Name} [cared|talked] about.",
]

FILLERS = [
    "{Hero} [walked|wandered|traveled] for a long time.", "{Hero} looked left and right.",
    "{Hero} took a deep breath.", "{Hero} did not know what to do at first.",
    "{Hero} asked an old neighbor for help.", "{Hero} tried again and again.",
    "{Hero} climbed over a [big|tall|round] rock.", "{Hero} ran as fast as {he} could.",
    "{Hero} stopped to rest for a while.", "{Hero} ate a [snack|sandwich|pear] and felt better.",
    "{Hero} counted to ten.", "It was harder than {Name} had expected.", "Step by step, {hero} moved on.",
    "A little bird sang nearby.", "{Hero} found a path and followed it.", "{Hero} waved to a passing neighbor.",
    "The hours went by slowly.", "{Hero} felt a bit tired but kept going.", "{Hero} made a careful plan.",
    "{Hero} looked up at the sky.", "A warm breeze blew by.", "{Hero} carried a small bag on {his} back.",
    "{Hero} took one more step.", "An old neighbor came by to help.",
    "{Hero} and the neighbor worked side by side.", "{Hero} packed some food for the trip.",
    "The road was long and full of turns.", "{Hero} listened carefully.", "{Hero} jumped over a small puddle.",
    "{Hero} sat down to think.", "{Hero} asked many people for advice.", "At noon, {hero} stopped for lunch.",
    "{Hero} wiped {his} face and went on.", "A small bug crawled past.", "{Hero} looked behind a tall tree.",
    "The sky changed color as the day went on.", "{Hero} learned something new that day.",
    "{Hero} did {his} very best.", "{Hero} felt proud for trying.", "Little by little, things got better.",
    "{Hero} drank some cool water.", "{Hero} tied {his} shoes and got ready.",
    "{Hero} followed a narrow [trail|path] for a while.", "{Hero} picked up a round stone.",
    "{Hero} [hummed|whistled] a little tune.", "{Hero} checked {his} bag one more time.", "Time passed, and {hero} kept looking.",
    "{Hero} felt [a little|very] nervous.", "{Hero} heard a noise and turned around.",
    "A goat walked by and nodded.", "{Hero} made a list of things to do.", "{Hero} asked a passing goat for directions.",
    "{Hero} found an old rope.", "{Hero} had to cross a wide ditch.", "{Hero} pushed a heavy log out of the way.",
    "The clouds moved slowly across the sky.", "{Hero} put on a warm coat.", "{Hero} climbed up a small hill.",
    "{Hero} felt the sun on {his} face.", "It took a long time, but {hero} did not stop.",
]

STYLE_SENTENCES = {
    "fairytale": ["A fairy watched {hero} from far away.", "The air was full of magic.",
                  "{Hero} felt as if a magic spell was working.", "An enchanted wind carried {Name}'s wish.",
                  "Somewhere, a fairy waved a tiny wand.", "Magic [sparkled|glowed] in the air."],
    "adventure": ["It was the start of a bold adventure.", "{Hero} felt daring and ready to go.",
                  "Every step was exciting.", "{Name}'s heart beat fast with excitement.",
                  "This adventure was only beginning.", "What an exciting [day|morning] it was."],
    "funny": ["{Hero} giggled so much that {he} fell over.", "Everything that day was a little silly.",
              "{Hero} tripped over a pebble and laughed.", "Even the clouds looked funny.",
              "{Hero} made a silly face and giggled.", "A silly goat laughed at {Name}'s hat."],
    "bedtime": ["{Hero} yawned a big, long yawn.", "The evening felt cozy and calm.",
                "{Hero} was getting a little sleepy.", "Soon it would be time for bed.",
                "{Name} wished for a soft pillow and a warm blanket.", "Everything felt [slow|soft] and sleepy."],
    "mystery": ["Something strange was going on.", "{Hero} found a clue on the ground.", "It was a real mystery.",
                "The puzzle grew bigger and bigger.", "{Hero} looked for clues everywhere.",
                "A strange mark was [on|near] the door."],
    "spooky": ["The shadows moved, and {hero} shivered.", "A creaky noise came from somewhere.",
               "Everything looked dark and spooky.", "An eerie wind blew past.",
               "{Hero} shivered in the long shadows.", "It was [dark|spooky] and very quiet."],
    "poetic": ["The light began to shimmer softly.", "Silver drops fell gently to the ground.",
               "Softly, the hours drifted by.", "Everything was shimmering and still.",
               "Gently, the wind moved the silver clouds.", "The water shimmered in the light."],
    "cheerful": ["The sun was bright and warm.", "{Hero} felt cheerful and light.", "It was a merry, sunny day.",
                 "Everyone nearby was cheerful.", "{Hero} whistled a merry tune.",
                 "The colors looked bright and cheerful."],
}

FEATURE_SENTENCES = {
    "dialogue": ['"I want to {goal}," said {Name}.', '"I will {goal} today," said {Name}.',
                 '"Let me help you," said an old neighbor.', '"Thank you so much," said {Name}.',
                 '"This is a big day," said {Name}.', '"Look over there!" shouted {Name}.',
                 '"We can do this," said {Name} with a smile.', '"Be careful," said an old neighbor.',
                 '"I am ready," said the {kind}.', '"Follow me," called {Name}.',
                 '"Do not worry," said an old neighbor.', '"Here I go," [said|whispered] the {kind}.'],
    "moral": ["The lesson of this story is about {theme}.", "And the moral is simple: {theme} matters.",
              "That was a lesson {Name} would never forget.", "The moral of the story is clear.",
              "{Name} learned an important lesson that day."],
    "twist": ["But then came a big surprise.", "Then something unexpected happened.",
              "Here is the twist: nothing was as it seemed.", "To everyone's surprise, the old neighbor was {a_kind} too.",
              "What happened next was a [real|total] surprise."],
    "flashback": ["{Hero} remembered a day long before, when {he} was very small.",
                  "The memory of that day made {Name} smile.", "{Hero} remembered what {his} mother once said.",
                  "An old memory came back to {Name}.", "{Hero} remembered {his} first day {loc}."],
    "thoughts": ["{Hero} thought, I can do this.", "{Hero} wondered what to do next.",
                 "{Name} thought about the {obj} for a long time.", "{Hero} wondered if the plan would work.",
                 "{Hero} thought hard about every step."],
    "sounds": ["Boom! Something fell nearby.", "Whoosh! A strong wind blew past.", "Splash! Water went everywhere.",
               "Crash! A pile of sticks fell down.", "Bang! A door shut.", "Pop! A little bubble burst."],
    "questions": ["Can you guess what {Name} did next?", "What would you do?", "Do you know what happened then?",
                  "Have you ever wanted to {goal}?", "Would you be scared?", "Can you guess where {Name} went?"],
    "dream": ["That night, {Name} had a dream about the {obj}.", "In the dream, everything was possible.",
              "{Hero} dreamed of a faraway place.", "The dream felt very real.",
              "{Hero} woke up from a dream with a new idea.", "{Hero} dreamed about the {obj} again."],
}

THEME_GENERIC = ["This is a story about {theme}.", "{Name} learned a lot about {theme}.",
                 "In the end, it was all about {theme}.", "{Hero} now understood {theme}.",
                 "{Name} knew {theme} was important.",
                 "It was a day of {theme}."]
THEME_SPECIFIC = {
    "courage": ["{Hero} was brave, even when {he} was scared.", "It takes courage to try something new.",
                "{Name} found {his} courage."],
    "friendship": ["{Hero} learned that friends help each other.", "Friendship made everything easier.",
                   "{Name} and {his} friends stood side by side."],
    "kindness": ["{Hero} was kind to everyone {he} met.", "A little kindness goes a long way.",
                 "{Name} learned that being kind is important."],
    "honesty": ["{Hero} always told the truth.", "Being honest was the right thing to do.",
                "{Name} learned that honesty matters."],
    "sharing": ["{Hero} shared everything with others.", "Sharing made {Name} feel warm inside.",
                "{Name} learned to share."],
    "patience": ["{Hero} learned to be patient.", "Patience helped {Name} wait for the right moment.",
                 "{Name} was patient and calm."],
    "curiosity": ["{Hero} was curious about everything.", "Curiosity led {Name} forward.",
                  "{Name} asked many curious questions."],
    "teamwork": ["{Hero} learned that working together is best.", "Teamwork made the job easy.",
                 "Together, they could do anything."],
    "forgiveness": ["{Hero} learned to forgive.", "Forgiveness made {Name} feel free.",
                    "{Name} forgave the old neighbor."],
    "hope": ["{Hero} never lost hope.", "Hope kept {Name} going.", "{Name} felt hopeful."],
    "family": ["{Hero} missed {his} family.", "Family was the most important thing to {Name}.",
               "{Name}'s family was always there."],
    "gratitude": ["{Hero} was grateful for every little thing.", "Gratitude filled {Name}'s heart.",
                  "{Name} felt thankful."],
    "perseverance": ["{Hero} did not quit.", "Perseverance is what helped {Name}.",
                     "{Name} was persistent and kept going."],
    "humility": ["{Hero} stayed humble.", "Humility made {Name} a better listener.",
                 "{Name} learned that being humble is good."],
    "generosity": ["{Hero} was generous with everyone.", "Generosity made the whole place glad.",
                   "{Name} gave generous gifts."],
    "responsibility": ["{Hero} took responsibility for {his} job.", "Being responsible was important to {Name}.",
                       "{Name} learned about responsibility."],
}

# ending -> (outcome sentences, coda sentences); the outcome comes first, a coda may follow
ENDING_SENTENCES = {
    "happy": (["In the end, {Name} {done}, and everyone cheered.",
               "At last, {Name} {done}, and {his} heart was full of joy.",
               "{Name} {done}, and it was a happy day.",
               "Finally, {Name} {done} and jumped for joy."],
              ["From that day on, the {kind} lived happily.", "{Hero} smiled with joy.",
               "Everyone cheered for the {kind}.", "The {kind} went home happy."]),
    "sad": (["Sadly, {Name} {fail}.", "In the end, {Name} {fail}, and it was a sad day.",
             "But {Name} {fail}, and tears filled {his} eyes.", "In the end, sadly, {Name} {fail}."],
            ["The {kind} went home with tears in {his} eyes.", "It was a sad day for the {kind}.",
             "Sadly, some things cannot be undone.", "The {kind} felt sad for a long time."]),
    "open": (["Nobody knows if {Name} ever {done}.", "Perhaps {Name} will {goal} someday.",
              "Maybe {Name} {done}, or maybe not.", "Perhaps, one day, {Name} will {goal}."],
             ["Perhaps the story is not over yet.", "Nobody knows what happened next.",
              "Maybe, someday, we will find out.", "Perhaps the {kind} is still out there."]),
    "bittersweet": (["Although {Name} {fail}, {he} found something else to love.",
                     "In the end, it was bittersweet: {Name} {done}, but something was lost.",
                     "Although {Name} {done}, {he} had to say goodbye to an old neighbor.",
                     "It was bittersweet, because {Name} {done} but had to leave home."],
                    ["It was a bittersweet ending.", "Although it hurt a little, {Name} felt glad.",
                     "The {kind} smiled a bittersweet smile.", "Although things changed, the {kind} went on."]),
}

# cue words: word -> (field, value). Dialogue and questions are counted from punctuation instead.
STYLE_MARKERS = {
    "fairytale": ["upon", "enchanted", "fairy", "magic", "spell", "wand"],
    "adventure": ["adventure", "exciting", "bold", "daring", "excitement"],
    "funny": ["silly", "funny", "wobbly", "giggled", "laughed"],
    "bedtime": ["sleepy", "cozy", "bed", "yawned", "yawn", "pillow", "blanket"],
    "mystery": ["mystery", "clue", "clues", "strange", "puzzling", "puzzle"],
    "spooky": ["spooky", "shadows", "creaky", "shivered", "eerie", "dark"],
    "poetic": ["softly", "gently", "silver", "shimmer", "shimmered", "shimmering"],
    "cheerful": ["sunny", "bright", "cheerful", "merry"],
}
FEATURE_MARKERS = {
    "moral": ["lesson", "moral"], "twist": ["surprise", "unexpected", "twist"],
    "flashback": ["remembered", "memory"], "thoughts": ["thought", "wondered"],
    "sounds": ["boom", "whoosh", "splash", "crash", "bang", "pop"], "dream": ["dream", "dreamed"],
}
THEME_MARKERS = {
    "courage": ["courage", "brave"], "friendship": ["friendship", "friends"], "kindness": ["kindness", "kind"],
    "honesty": ["honesty", "honest", "truth"], "sharing": ["sharing", "share", "shared"],
    "patience": ["patience", "patient"], "curiosity": ["curiosity", "curious"],
    "teamwork": ["teamwork", "together"], "forgiveness": ["forgiveness", "forgive", "forgave"],
    "hope": ["hope", "hopeful"], "family": ["family"], "gratitude": ["gratitude", "grateful", "thankful"],
    "perseverance": ["perseverance", "persistent", "quit"], "humility": ["humility", "humble"],
    "generosity": ["generosity", "generous"], "responsibility": ["responsibility", "responsible"],
}
ENDING_MARKERS = {
    "happy": ["happily", "joy", "cheered", "happy"], "sad": ["sadly", "tears", "sad"],
    "open": ["perhaps", "nobody", "maybe", "someday"], "bittersweet": ["bittersweet", "although"],
}


def _build_cues():
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


def render_story(ann, rng, record=None):
    """Turn an annotation into a story. Surface varies with rng; semantics are fixed by ann.
    If `record` is a list, the id of every sentence template used is appended to it."""
    r = rng.random
    kind, name, place, style, feature, ending = (ann["character"], ann["name"], ann["setting"], ann["style"],
                                                  ann["feature"], ann["ending"])
    she = kind in ("girl", "princess", "witch") or (kind not in ("boy", "wizard") and name in _SHE)
    prep, adjs = SETTINGS[place]
    goals, done, fail = QUESTS[ann["quest"]]
    adj = INTRO_ADJS[int(r() * len(INTRO_ADJS))]
    he = "she" if she else "he"
    ctx = {"Name": name, "kind": kind, "a_kind": _article(kind), "a_adj": "a " + adj, "He": he.capitalize(),
           "he": he, "his": "her" if she else "his", "him": "her" if she else "him", "place": place,
           "goal": goals[r() < 0.5], "obj": ann["quest"], "done": done, "fail": fail, "theme": ann["theme"]}
    # ways to refer to the hero; the name is favoured so it stays the dominant cue
    caps = [name, name, name, "The " + kind, f"The {adj} {kind}", ctx["He"]]
    lows = [name, name, "the " + kind, f"the {adj} {kind}"]
    locs = [f"{prep} the {place}", f"{prep} the {adjs[int(r() * len(adjs))]} {place}"]
    used = set()  # template ids already in this story: no sentence repeats

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

    # the skeleton: opening + intro, setting (naming the kind again), quest, one style and one
    # feature sentence (two lines of dialogue), a theme sentence, the ending outcome
    o = P_OPEN[style][int(r() * len(P_OPEN[style]))]
    b = P_BODY[int(r() * len(P_BODY))]
    opening = (o[0], o[1] + ", " + b[1].format_map(ctx))
    feat_pool, theme_pool = P_FEAT[feature], P_THEME[ann["theme"]]
    end_out, end_coda = P_END[ending]
    sec = {
        "set": [say(P_SET_HERO[place], kind_ref=True)],
        "quest": [say(P_QUEST)],
        "feat": [say(feat_pool)] + ([say(feat_pool)] if feature == "dialogue" else []),
        "style": [say(P_STYLE[style])],
        "theme": [say(theme_pool)],
        "coda": [],
        "fill": [],
    }
    ends = [say(end_out)]
    n = _nwords(opening[1]) + sum(_nwords(s) for ss in sec.values() for _, s in ss) + _nwords(ends[0][1])
    lo, hi = LENGTH_WORDS[ann["length"]]
    target = lo + int(r() * (hi - lo + 1))
    # a second setting, theme and ending sentence whenever they fit (nearly always): two cues per
    # field survive a sloppy model sample better than one
    for name, pool in (("set", P_SET[place]), ("theme", theme_pool), ("coda", end_coda)):
        x = say(pool)
        if x is not None and n + x[1].count(" ") + 1 <= hi:
            sec[name].append(x)
            n += x[1].count(" ") + 1
        elif x is not None:
            used.discard(x[0])
    pools = {"set": P_SET[place], "quest": P_QUEST_X, "feat": feat_pool, "style": P_STYLE[style],
             "theme": theme_pool, "coda": end_coda, "fill": P_FILL}
    for _ in range(80):  # optional sentences until the target length (never past hi)
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

    # order: opening, setting, quest, a shuffled middle, theme, (moral), ending
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
    sents += ends + sec["coda"]
    if record is not None:
        record += [b[0]] + [tid for tid, _ in sents]
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
# 3. The annotator and the quality checker

_WORD_RE = re.compile(r"[a-z]+")
_SENT_RE = re.compile(r'(?<=[.!?])\s+(?=[A-Z"])|(?<=[.!?]")\s+(?=[A-Z"])')
TITLE_PREFIX = "Title: "
CLOSING = "The End."


def is_house_format(text):
    """The assistant house format: a first line 'Title: ...' and a last line 'The End.'."""
    lines = text.strip().split("\n")
    return (len(lines) >= 3 and lines[0].startswith(TITLE_PREFIX) and len(lines[0]) > len(TITLE_PREFIX)
            and lines[-1].strip() == CLOSING and any(l.strip() for l in lines[1:-1]))


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


def split_sentences(body):
    return [s for s in _SENT_RE.split(body.replace("\n", " ").strip()) if s]


def quality_problem(text):
    """What makes this text not a well-formed story (a few words), or None if it is one. Checks what
    the corruptions break: ending present and last, no repeated sentence, one hero (one name, one
    kind, introduced by 'named' in the first sentence), one setting, sane length. House title and
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


# -----------------------------------------------------------------------------
# 4. Corruption: the low-quality fraction of pretraining docs

CORRUPTIONS = ("truncate", "repeat", "shuffle", "rename", "drift")


def corrupt(story, ann, rng):
    """Return (corrupted text, kind). Each kind is a visible defect quality() should catch."""
    sents = split_sentences(story)
    kind = rng.choice(CORRUPTIONS)
    n = len(sents)
    if n < 6:  # too short to cut or splice sensibly
        kind = "repeat"
    if kind == "truncate":
        k = rng.randint(max(2, n // 3), n - 3)
        if rng.random() < 0.5:  # cut mid-sentence
            words = sents[k].split()
            cut = rng.randint(1, max(1, len(words) - 1))
            return " ".join(sents[:k] + [" ".join(words[:cut])]), kind
        return " ".join(sents[:k]), kind
    if kind == "repeat":
        i = rng.randrange(n - 1)
        j = rng.choice([i + 1, rng.randint(1, n - 1)])
        return " ".join(sents[:j] + [sents[i]] + sents[j:]), kind
    if kind == "shuffle":
        s = sents[:]
        while s[0] == sents[0]:
            rng.shuffle(s)
        return " ".join(s), kind
    if kind == "rename":
        name = ann["name"]
        new = rng.choice([x for x in NAMES if x != name])
        k = rng.randint(1, max(1, n // 2))
        tail = [re.sub(r"\b%s\b" % name, new, s) for s in sents[k:]]
        if tail == sents[k:]:  # the name never came back: add a sentence that uses the new one
            tail.insert(0, f"{new} looked around.")
        return " ".join(sents[:k] + tail), kind
    # drift: the story wanders into another story with another hero
    other = sample_annotation(rng)
    while other["character"] == ann["character"] or other["name"] == ann["name"]:
        other = sample_annotation(rng)
    o = split_sentences(render_story(other, rng))
    k = rng.randint(max(2, n // 3), max(2, 2 * n // 3))
    j = rng.randint(len(o) // 3, max(len(o) // 3, len(o) - 2))
    return " ".join(sents[:k] + o[j:]), kind

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


# prompt phrasings. Open prompts are whole sentences; constrained prompts are a lead with
# {a} (article + optional adjective) + "story" + field clauses.
OPEN_PROMPTS = [
    "Write a story.", "Tell me a story.", "Please write a story.", "Please tell me a story.",
    "Can you tell me a story?", "Can you write a story for me?", "Make up a story for me.",
    "I would like to hear a story.", "Write a children's story.", "Tell me any story you like.",
    "I want a new story.", "Write me a story, please.", "Create a story for a child.",
    "Share a story with me.", "Give me a story.", "Write something: a story for kids.",
]
LEADS = [
    "Write {a} story{c}.", "Tell me {a} story{c}.", "Please write {a} story{c}.",
    "Can you write {a} story{c}?", "Could you tell me {a} story{c}?", "I would like {a} story{c}.",
    "Make up {a} story{c}.", "Write me {a} story{c}.", "Create {a} story{c}.", "I want to read {a} story{c}.",
]
CLAUSES = {
    "character": [" about {art}", " with {art} as the main character", " where the hero is {art}", " starring {art}"],
    "name": [" about someone named {v}", " where the hero is called {v}", " with a main character named {v}"],
    "setting": [" set {loc}", " that takes place {loc}", " about a day {loc}"],
    "theme": [" about {v}", " with a theme of {v}", " that teaches about {v}"],
    "ending": [" with {art} ending", " that has {art} ending"],
    "style": [" in a {sw} style"],
    "length": [],
}
STYLE_WORDS = {"fairytale": "fairy-tale", "adventure": "adventure", "funny": "funny", "bedtime": "bedtime",
               "mystery": "mystery", "spooky": "spooky", "poetic": "poetic", "cheerful": "cheerful"}
LENGTH_WORDS_PROMPT = {"short": "short", "medium": "medium-length", "long": "long"}
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
    kind, name, obj = ann["character"].capitalize(), ann["name"], ann["quest"].capitalize()
    adj = rng.choice(["Little", "Clever", "Young", "Tiny", "Wise"])
    return rng.choice([f"The {adj} {kind}", f"{name} and the {obj}", f"{name} the {kind}",
                       f"The {kind} and the {obj}", f"A Story About {name}"])


def house_format(title, story):
    return f"{TITLE_PREFIX}{title}\n\n{story}\n\n{CLOSING}"


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


def _entropy(p):
    return -sum(x * math.log2(x) for x in p if x > 0)


def prior_entropy():
    """Exact entropy (bits) of each field under the pretraining prior."""
    return {f: _entropy(PRIOR[f]) for f in FIELDS}


def free_fields(constraints):
    return [f for f in FIELDS if f not in (constraints or {})]


def sft_entropy(narrowness=DEFAULT_NARROWNESS, constraints=None):
    """Exact entropy (bits) of each field of the SFT data given the prompt's pinned fields."""
    constraints = constraints or {}
    return {f: 0.0 if f in constraints else _entropy(sft_distribution(f, narrowness)) for f in FIELDS}


def mean_free_entropy(ent, constraints=None):
    free = free_fields(constraints or {})
    return sum(ent[f] for f in free) / len(free)

# -----------------------------------------------------------------------------
# 7. Tokenizer: byte-level BPE trained on word frequencies, stored as a tiktoken rank file

SPECIAL_TOKENS = ["<|bos|>", "<|ann|>", "<|story|>", "<|user|>", "<|assistant|>", "<|eos|>", "<|pad|>"]
PAT_STR = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""  # GPT-2's
_PAT = regex.compile(PAT_STR)
TOKENIZER_FILE = "tokenizer.tiktoken"
FORCED_MERGES = [b" |"]  # one token for the field separator: handy for field-by-field sampling


def train_tokenizer(texts, vocab_size=2048):
    """Byte-level BPE on the word (pre-token) frequencies of `texts`. vocab_size counts the 256
    bytes, the merges and the special tokens. Stops early if every word is a single token."""
    n_merges = vocab_size - 256 - len(SPECIAL_TOKENS)
    if n_merges < len(FORCED_MERGES):
        raise ValueError(f"vocab_size={vocab_size} is too small; need at least {256 + len(SPECIAL_TOKENS) + 1}")
    freqs = Counter()
    for t in texts:
        freqs.update(_PAT.findall(t))
    words = [list(w.encode("utf-8")) for w in freqs]
    counts = list(freqs.values())
    vocab = [bytes([i]) for i in range(256)]
    index = {b: i for i, b in enumerate(vocab)}
    pairs = Counter()
    where = {}
    for wi, w in enumerate(words):
        for p in zip(w, w[1:]):
            pairs[p] += counts[wi]
            where.setdefault(p, set()).add(wi)

    def merge(pair):
        a, b = pair
        new_bytes = vocab[a] + vocab[b]
        if new_bytes in index:  # already reachable another way: reuse, spend no rank
            new = index[new_bytes]
        else:
            new = len(vocab)
            vocab.append(new_bytes)
            index[new_bytes] = new
        for wi in sorted(where.pop(pair, ())):
            w, c = words[wi], counts[wi]
            for p in zip(w, w[1:]):
                pairs[p] -= c
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(new)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            words[wi] = out
            for p in zip(out, out[1:]):
                pairs[p] += c
                where.setdefault(p, set()).add(wi)
        pairs.pop(pair, None)

    for fb in FORCED_MERGES:
        merge((fb[0], fb[1]))  # forced merges are 2-byte tokens
    while len(vocab) < 256 + n_merges:
        best = max(pairs.items(), key=lambda kv: (kv[1], -kv[0][0], -kv[0][1]), default=None)
        if best is None or best[1] <= 0:
            break
        merge(best[0])
    ranks = {b: i for i, b in enumerate(vocab)}
    return _make_encoding(ranks)


def _make_encoding(ranks):
    n = len(ranks)
    return tiktoken.Encoding(name="nanoanchor", pat_str=PAT_STR, mergeable_ranks=ranks,
                             special_tokens={t: n + i for i, t in enumerate(SPECIAL_TOKENS)})


def save_tokenizer(enc, path):
    """tiktoken rank-file format: base64(token bytes) + ' ' + rank, one per line."""
    if os.path.isdir(path):
        path = os.path.join(path, TOKENIZER_FILE)
    ranks = enc._mergeable_ranks
    lines = [f"{base64.b64encode(b).decode()} {r}" for b, r in sorted(ranks.items(), key=lambda kv: kv[1])]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path


def load_tokenizer(data_dir):
    """Load tokenizer.tiktoken from a data dir (or a file path) with the special tokens; no network."""
    path = data_dir if os.path.isfile(data_dir) else os.path.join(data_dir, TOKENIZER_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no tokenizer at {path}; run `python data.py --out_dir {data_dir}` first")
    ranks = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                tok, r = line.split()
                ranks[base64.b64decode(tok)] = int(r)
    return _make_encoding(ranks)


def tokenizer_hash(enc):
    h = hashlib.sha256()
    for b, r in sorted(enc._mergeable_ranks.items(), key=lambda kv: kv[1]):
        h.update(b + b"\x00" + str(r).encode() + b"\n")
    h.update(json.dumps([PAT_STR, sorted(enc._special_tokens.items())]).encode())
    return h.hexdigest()[:16]

# -----------------------------------------------------------------------------
# 8. THE format function: token ids and loss mask of a training example, and inference prefixes

FORMATS = ("plain", "annotated", "standard", "anchored", "anchored_strict", "anchored_unmasked")
# The three anchored SFT formats share one token layout and differ only in which annotation
# tokens carry loss (the response and <|eos|> always do):
#   anchored           every annotation token except the values of the fields the prompt left free
#                      (the format and the pinned values are determined by the prompt; the free
#                      values are the model's own choices, and get no gradient)
#   anchored_strict    no annotation token: the paper's recipe taken literally (see README: at toy
#                      scale the model never learns to write an annotation after a prompt)
#   anchored_unmasked  every annotation token (the ablation: the annotation collapses too)
ANCHORED_FORMATS = ("anchored", "anchored_strict", "anchored_unmasked")


def _sp(enc, tok):
    return enc._special_tokens[tok]


def _ann_text(annotation):
    return annotation if isinstance(annotation, str) else format_annotation(annotation)


def _annotation_segments(T, annotation, pinned):
    """The annotation cut at word boundaries (so the ids equal T(format_annotation(annotation))):
    every token carries loss except the value of a field the prompt left free. Those values are
    the model's own choices; their distribution must stay the one pretraining taught."""
    segs = []
    for i, (f, v) in enumerate((f, annotation[f]) for f in FIELDS if f in annotation):
        segs.append((T((" | " if i else "") + f + ":"), 1))
        segs.append((T(" " + v), 1 if pinned.get(f) == v else 0))
    return segs


def _layout(enc, fmt, prompt=None, annotation=None, body=None, anchor=True, encode=None, pinned=None):
    """Segments (ids, loss flag) of a format, in order. A `body` of None means: stop right where
    generation starts (the inference prefix). This is the single place the layouts live."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt={fmt!r} is not one of {FORMATS}")
    S = lambda t: [_sp(enc, t)]  # noqa: E731
    T = encode or enc.encode_ordinary
    segs = [(S("<|bos|>"), 0)]
    if fmt == "plain":
        segs.append((S("<|story|>"), 1))
    elif fmt == "annotated":
        segs.append((S("<|ann|>"), 1))
        if body is None and annotation is None:
            return segs
        segs += [(T(_ann_text(annotation)), 1), (S("<|story|>"), 1)]
    else:
        segs += [(S("<|user|>"), 0), (T(prompt), 0), (S("<|assistant|>"), 0)]
        if fmt in ANCHORED_FORMATS and anchor:
            # which annotation tokens carry loss: all (unmasked), none (strict), or all but the
            # free choices (anchored: the format and the values the prompt pins, see ANCHORED_FORMATS)
            a = 0 if fmt == "anchored_strict" else 1
            segs.append((S("<|ann|>"), a))
            if body is None and annotation is None:
                return segs
            if fmt == "anchored" and body is not None and not isinstance(annotation, str):
                segs += _annotation_segments(T, annotation, pinned or {})
            else:
                segs.append((T(_ann_text(annotation)), a))
            segs.append((S("<|story|>"), a))
        elif fmt != "standard":  # anchor=False: the "no annotation first" ablation
            segs.append((S("<|story|>"), 0))
    if body is not None:
        segs += [(T(body), 1), (S("<|eos|>"), 1)]
    return segs


def encode_example(enc, example, fmt, encode=None):
    """(ids, loss_mask) of one example; loss_mask[i] == 1 means ids[i] is a training target.
    plain/annotated take {'story', 'annotation'}; SFT formats take {'prompt', 'annotation', 'response'}.
    `encode` (text -> ids, default enc.encode_ordinary) lets the dataset build reuse a story's ids."""
    if fmt in ("plain", "annotated"):
        segs = _layout(enc, fmt, annotation=example.get("annotation"), body=example["story"], encode=encode)
    else:
        segs = _layout(enc, fmt, prompt=example["prompt"], annotation=example.get("annotation"),
                       body=example["response"], encode=encode, pinned=example.get("constraints"))
    ids, mask = [], []
    for s, m in segs:
        ids += s
        mask += [m] * len(s)
    return ids, mask


def prompt_ids(enc, fmt, prompt=None, annotation=None, anchor=True):
    """The inference prefix of a format (same code as encode_example, cut where generation starts)."""
    if fmt in ("standard", *ANCHORED_FORMATS) and prompt is None:
        raise ValueError(f"fmt={fmt!r} needs a prompt")
    ids = []
    for s, _ in _layout(enc, fmt, prompt=prompt, annotation=annotation, anchor=anchor):
        ids += s
    return ids

# -----------------------------------------------------------------------------
# 9. Building the dataset on disk

DEFAULTS = dict(n_stories=100_000, seed=1337, noise=0.2, narrowness=DEFAULT_NARROWNESS, vocab_size=2048,
                n_sft=20_000, n_sft_val=1_000, val_frac=0.02, tokenizer_docs=20_000)
OUTPUT_FILES = [TOKENIZER_FILE, "pretrain_plain_train.bin", "pretrain_plain_val.bin",
                "pretrain_annotated_train.bin", "pretrain_annotated_val.bin", "sft_train.jsonl", "sft_val.jsonl",
                "eval_prompts.json", "meta.json"]


def generate_pretraining_docs(n, seed, noise, progress=True):
    """n docs: (story text, true annotation, corruption kind or None). A `noise` fraction is corrupted."""
    rng = random.Random(seed)
    docs = []
    for _ in tqdm(range(n), desc="stories", disable=not progress, mininterval=1.0):
        ann = sample_annotation(rng)
        story = render_story(ann, rng)
        kind = None
        if rng.random() < noise:
            story, kind = corrupt(story, ann, rng)
        docs.append((story, ann, kind))
    return docs


def _write_shards(enc, docs, out_dir, split, progress=True):
    """pretrain_{plain,annotated}_{split}.bin from the same docs, each story tokenized once."""
    chunks = {"plain": [], "annotated": []}
    for story, ann, _ in tqdm(docs, desc=f"tokenize {split}", disable=not progress, mininterval=1.0):
        story_ids = enc.encode_ordinary(story)
        encode = lambda t: story_ids if t is story else enc.encode_ordinary(t)  # noqa: E731
        for fmt, ch in chunks.items():
            ids, _ = encode_example(enc, {"story": story, "annotation": ann}, fmt, encode=encode)
            ch.append(np.asarray(ids, dtype=np.uint16))
    tokens = {}
    for fmt, ch in chunks.items():
        name = f"pretrain_{fmt}_{split}"
        arr = np.concatenate(ch) if ch else np.zeros(0, dtype=np.uint16)
        path = os.path.join(out_dir, name + ".bin")
        arr.tofile(path + ".tmp")
        os.replace(path + ".tmp", path)
        tokens[name] = int(arr.size)
    return tokens


def _grammar_hash():
    """Fingerprint of the world's tables, so a dataset built by an older grammar is never reused."""
    tables = [FIELDS, PRIOR_ZIPF, SETTINGS, QUESTS, OPEN_PREFIX, OPEN_BODY, SETTING_GENERIC, SETTING_SPECIFIC,
              QUEST_INTRO, QUEST_EXTRA, FILLERS, STYLE_SENTENCES, FEATURE_SENTENCES, THEME_GENERIC,
              THEME_SPECIFIC, ENDING_SENTENCES, LENGTH_WORDS, FAVOURITES, FAV_WEIGHTS, OPEN_PROMPTS, LEADS,
              CLAUSES, EVAL_PROMPTS, SPECIAL_TOKENS, PAT_STR, DATA_VERSION]
    return hashlib.sha256(json.dumps(tables, sort_keys=True).encode()).hexdigest()[:12]


DERIVED_OPTIONS = ("version", "grammar")  # recorded in meta.json options, not chosen by the caller


def _resolve_options(options):
    options = {k: v for k, v in options.items() if k not in DERIVED_OPTIONS}
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown dataset option(s) {sorted(unknown)}; valid: {sorted(DEFAULTS)}")
    opts = dict(DEFAULTS, **options)
    if not 0.0 <= opts["noise"] <= 1.0:
        raise ValueError(f"noise={opts['noise']} must be in [0, 1]")
    if opts["vocab_size"] > 65535:
        raise ValueError(f"vocab_size={opts['vocab_size']} does not fit the uint16 token shards")
    sft_distribution("name", opts["narrowness"])  # validates narrowness
    opts["version"] = DATA_VERSION
    opts["grammar"] = _grammar_hash()
    return opts


def build_dataset(out_dir, opts, progress=True):
    t0 = time.time()
    os.makedirs(out_dir, exist_ok=True)
    meta_path = os.path.join(out_dir, "meta.json")
    if os.path.exists(meta_path):
        os.remove(meta_path)  # meta.json is written last: its presence marks a complete build
    docs = generate_pretraining_docs(opts["n_stories"], opts["seed"], opts["noise"], progress)
    sft_train = make_sft_examples(opts["n_sft"], opts["narrowness"], opts["seed"] + 1)
    sft_val = make_sft_examples(opts["n_sft_val"], opts["narrowness"], opts["seed"] + 2)
    # tokenizer: trained on the first docs (annotated layout) and some SFT text
    tdocs = docs[: opts["tokenizer_docs"]]
    texts = [s for s, _, _ in tdocs] + [format_annotation(a) for _, a, _ in tdocs]
    texts += [e["prompt"] for e in sft_train[:5000]] + [e["response"] for e in sft_train[:2000]]
    texts += [p["prompt"] for p in EVAL_PROMPTS] + [format_annotation({f: v}) for f in FIELDS for v in FIELDS[f]]
    enc = train_tokenizer(texts, opts["vocab_size"])
    save_tokenizer(enc, os.path.join(out_dir, TOKENIZER_FILE))
    n_val = max(1, int(len(docs) * opts["val_frac"])) if docs else 0
    splits = {"train": docs[n_val:], "val": docs[:n_val]}
    tokens = {}
    for split, ds in splits.items():
        tokens.update(_write_shards(enc, ds, out_dir, split, progress))
    for name, exs in (("sft_train", sft_train), ("sft_val", sft_val)):
        with open(os.path.join(out_dir, name + ".jsonl"), "w") as f:
            for e in exs:
                f.write(json.dumps(e) + "\n")
    with open(os.path.join(out_dir, "eval_prompts.json"), "w") as f:
        json.dump(EVAL_PROMPTS, f, indent=1)
    pe = prior_entropy()
    so = sft_entropy(opts["narrowness"])
    meta = {
        "options": opts,
        "n_docs": {"train": len(splits["train"]), "val": len(splits["val"])},
        "n_corrupted": dict(Counter(k for _, _, k in docs if k)),
        "n_sft": {"train": len(sft_train), "val": len(sft_val)},
        "tokens": tokens,
        "tokenizer_hash": tokenizer_hash(enc),
        "vocab_size": enc.n_vocab,
        "special_ids": {t: enc._special_tokens[t] for t in SPECIAL_TOKENS},
        "entropy": {
            "prior": pe, "prior_mean": mean_free_entropy(pe),
            "sft_open": so, "sft_open_mean": mean_free_entropy(so),
            "sft_eval_prompts": [{"prompt": p["prompt"], "constraints": p["constraints"],
                                  "entropy": sft_entropy(opts["narrowness"], p["constraints"]),
                                  "mean_free": mean_free_entropy(sft_entropy(opts["narrowness"], p["constraints"]),
                                                                 p["constraints"])} for p in EVAL_PROMPTS],
        },
        "build_seconds": round(time.time() - t0, 1),
    }
    with open(meta_path + ".tmp", "w") as f:
        json.dump(meta, f, indent=1)
    os.replace(meta_path + ".tmp", meta_path)
    return meta


def _reusable(out_dir, opts):
    """The meta of a complete build in out_dir made with exactly `opts`, else None."""
    meta_path = os.path.join(out_dir, "meta.json")
    if not os.path.exists(meta_path):
        return None
    with open(meta_path) as f:
        meta = json.load(f)
    if meta.get("options") == opts and all(os.path.exists(os.path.join(out_dir, n)) for n in OUTPUT_FILES):
        return meta
    return None


def ensure_dataset(out_dir="data", progress=True, **options):
    """Build the dataset in out_dir unless an identical build (same options, all files) is there.
    Different options never mix with old files: the old build is replaced (and we say so).
    A lock file makes parallel callers (several training runs) wait for one builder."""
    opts = _resolve_options(options)
    meta = _reusable(out_dir, opts)
    if meta is not None:
        return meta
    os.makedirs(out_dir, exist_ok=True)
    lock = os.path.join(out_dir, ".building")
    while True:
        try:
            os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            break
        except FileExistsError:
            try:
                if time.time() - os.path.getmtime(lock) > 900:  # a builder that died long ago
                    os.remove(lock)
            except FileNotFoundError:
                pass
            time.sleep(1)
    try:
        meta = _reusable(out_dir, opts)  # the builder we waited for may have made just this
        if meta is not None:
            return meta
        meta_path = os.path.join(out_dir, "meta.json")
        if os.path.exists(meta_path):
            with open(meta_path) as f:
                old = json.load(f).get("options", {})
            diff = {k: (old.get(k), opts[k]) for k in opts if old.get(k) != opts[k]}
            print(f"data: {out_dir} was built with other options {diff} (old, new) or is incomplete; rebuilding")
        for n in OUTPUT_FILES:
            p = os.path.join(out_dir, n)
            if os.path.exists(p):
                os.remove(p)
        return build_dataset(out_dir, opts, progress)
    finally:
        os.remove(lock)


def show(n, seed):
    rng = random.Random(seed)
    for i in range(n):
        ann = sample_annotation(rng)
        print(f"--- story {i}\n[{format_annotation(ann)}]\n{render_story(ann, rng)}\n")
    ann = sample_annotation(rng)
    bad, kind = corrupt(render_story(ann, rng), ann, rng)
    print(f"--- corrupted ({kind}); quality={quality(bad)}\n[{format_annotation(ann)}]\n{bad}\n")
    for kind in ("open", "constrained"):
        ex = make_sft_example(rng, DEFAULT_NARROWNESS, kind)
        print(f"--- SFT example ({kind})\nprompt: {ex['prompt']}\n[{format_annotation(ex['annotation'])}]\n"
              f"{ex['response']}\n")


def main():
    p = argparse.ArgumentParser(description="Generate the nanoanchor synthetic story dataset.")
    p.add_argument("--out_dir", default="data")
    p.add_argument("--n_stories", type=int, default=DEFAULTS["n_stories"])
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    p.add_argument("--noise", type=float, default=DEFAULTS["noise"], help="fraction of corrupted pretraining docs")
    p.add_argument("--narrowness", type=float, default=DEFAULTS["narrowness"],
                   help="SFT free-field narrowness in [0,1]: 0 = as broad as the prior, 1 = favourites only")
    p.add_argument("--vocab_size", type=int, default=DEFAULTS["vocab_size"])
    p.add_argument("--n_sft", type=int, default=DEFAULTS["n_sft"])
    p.add_argument("--n_sft_val", type=int, default=DEFAULTS["n_sft_val"])
    p.add_argument("--show", type=int, default=0, help="print N annotated stories, a corrupted one, SFT examples; exit")
    a = p.parse_args()
    if a.show:
        show(a.show, a.seed)
        return
    meta = ensure_dataset(a.out_dir, n_stories=a.n_stories, seed=a.seed, noise=a.noise, narrowness=a.narrowness,
                          vocab_size=a.vocab_size, n_sft=a.n_sft, n_sft_val=a.n_sft_val)
    print(json.dumps({k: meta[k] for k in ("n_docs", "tokens", "vocab_size", "tokenizer_hash")}, indent=1))


if __name__ == "__main__":
    main()
