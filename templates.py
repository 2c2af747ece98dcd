"""
templates.py: the tables of the story world, as pure data.

Nothing here runs: these are the values each annotation field can take (world.FIELDS lists them),
with the words the grammar says them in; the sentence tables grammar.py draws stories from; the
cue words judge.py reads a story's fields back from; and the phrasings of SFT prompts.
Edit a table and the world changes (tests/test_world_pin.py will say so, and data.py's grammar
hash makes every old dataset rebuild).

Template slots: {Hero}/{hero} (name, "the dragon", ... re-drawn per sentence), {Name}, {kind} and
{a_kind} (the hero's character: "dragon", "a dragon"; slot names are part of the tables' hash), {adj},
{He}/{he}/{his}/{him}, {loc} ("in the hot desert"), {place} ("desert"),
{goal}, {obj}, {done}, {fail}, {theme}. "[a|b]" marks alternatives: each template expands (at
import, in grammar.py) into all its variants.

Every semantic field has its own small set of cue words (the character, the name after
"named", the setting keyword, theme words, the quest object, style markers, feature markers,
ending markers) and NO template uses a cue word of another field. That is what lets the
annotator (and a tiny model copying the surface) keep the fields apart.
"""

# -----------------------------------------------------------------------------
# The fields' values

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


# -----------------------------------------------------------------------------
# Story sentences

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

# -----------------------------------------------------------------------------
# Cue words the judge reads

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

# -----------------------------------------------------------------------------
# SFT prompt phrasings

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
