"""sft.py with one change to the SFT data: the house title's words in lower case where pretraining
writes them so ("The little monkey", "Toby and the key", "A story about Toby"), instead of
world.make_title's capitalised forms ("The Little Monkey", "Toby and the Key"), which no pretraining
document holds (" Monkey" is two tokens pretraining never uses). The same two rng draws as
make_title, so every other part of every example (prompt, annotation, story) is unchanged. Run from
the repository root with --narrowness (the SFT examples are made in memory, where the patch applies):
    PYTHONPATH=. python results/science/titles/sft_lowercase_titles.py --init_from ... --narrowness 0.95 ..."""
import sys

import sft
import world


def lowercase_title(ann, rng):
    character, name, obj = ann["character"], ann["name"], ann["quest"]
    adj = rng.choice(["little", "clever", "young", "tiny", "wise"])
    return rng.choice([f"The {adj} {character}", f"{name} and the {obj}", f"{name} the {character}",
                       f"The {character} and the {obj}", f"A story about {name}"])


if __name__ == "__main__":
    if "--narrowness" not in sys.argv:
        raise SystemExit("error: pass --narrowness (0.95 for the default SFT data): the patch reaches only in-memory SFT examples")
    world.make_title = lowercase_title
    sft.main(sys.argv[1:])
