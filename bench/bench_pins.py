"""
How often does a story follow a pinned annotation field? (controllable generation, sample.py --annotation)

    python bench/bench_pins.py runs/cpu/cpu-m/base_ann 48
    python bench/bench_pins.py runs/cpu/cpu-m/sft_anchored 48   # after anchored SFT ("Write a story.")

For a few single-field pins, K samples with the field pinned and K without; prints the share of
stories in which judge.annotate finds the pinned value. The gap between the two columns is how
much the model conditions its story on that annotation field.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import judge  # noqa: E402
import sample  # noqa: E402
from checkpoint import load_model  # noqa: E402
from tokenizer import BASE_FORMATS  # noqa: E402

PINS = ({"setting": "desert"}, {"character": "dragon"}, {"name": "Mia"}, {"ending": "sad"})


def main():
    if len(sys.argv) != 3:
        raise SystemExit("usage: python bench/bench_pins.py <annotated base or anchored SFT checkpoint dir> <K>")
    torch.set_num_threads(1)  # small batched decoding: one thread is faster on a shared CPU
    model, ckpt, enc = load_model(sys.argv[1])
    k = int(sys.argv[2])
    # a base model sees no prompt; an anchored SFT model gets the plainest open instruction
    prompt = None if ckpt["format"] in BASE_FORMATS else "Write a story."
    for pins in PINS:
        (field, value), = pins.items()
        pinned = sample.sample_stories(model, enc, ckpt["format"], prompt, k, seed=1, pinned=pins, batch_size=k)
        free = sample.sample_stories(model, enc, ckpt["format"], prompt, k, seed=2, batch_size=k)
        rate = lambda samples: sum(judge.annotate(s["text"])[field] == value for s in samples) / k  # noqa: E731
        print(f"{field}: {value:8s} pinned {rate(pinned):.2f}   unpinned {rate(free):.2f}   (K={k})")


if __name__ == "__main__":
    main()
