"""Does a held-out prompt's unseen byte break the annotation's copy of the prompt? The same
checkpoints, their unseen tokens' embedding rows as trained and as zero (sft.start_embeddings' rule).

    python results/science/unseen_tokens/unseen_tokens.py CKPT [CKPT ...] > unseen_tokens.txt

For each checkpoint (an anchored SFT run of the code before that rule) and each prompt: the share of
200 sampled annotations (T = 1, the evaluation's annotation sampling) that hold every value the
prompt pins. "unseen": tokens its base masks as dead that no SFT row (train or val, input or target)
holds, exactly the rows the rule zeroes; no training row reaches them, so zeroing them afterwards
gives the checkpoint that rule would have trained. A prompt without unseen tokens reads the same
both ways (the control: the last four prompts are in the SFT data's phrasing). Checkpoints made
since the rule (runs/lr2) hold zero rows already: they read the same both ways, and show which
fields each LR learnt to copy."""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import engine  # noqa: E402
import sft  # noqa: E402
from checkpoint import load_model  # noqa: E402
from metrics import annotation_fields  # noqa: E402
from sample import sample_annotation_texts  # noqa: E402
import world  # noqa: E402

PROMPTS = [(p["prompt"], p["constraints"]) for p in world.EVAL_PROMPTS if p["constraints"]] + [
    ("Write a story about a fox set in the forest.", {"character": "fox", "setting": "forest"}),  # training phrasing
    ("I would like a story about a fox set in the forest.", {"character": "fox", "setting": "forest"}),
    ("Write a story about someone named Omar.", {"name": "Omar"}),
    ("Write a story about a fox with a theme of honesty.", {"character": "fox", "theme": "honesty"})]


def carries(model, enc, fmt, prompt, constraints, n=200):
    anns = [annotation_fields(a) for a in sample_annotation_texts(model, enc, fmt, prompt, n, seed=1, batch_size=n,
                                                                  dtype=torch.bfloat16)]
    return sum(all(a.get(f) == v for f, v in constraints.items()) for a in anns) / n


def unseen_tokens(ckpt, enc):
    """The rows sft.start_embeddings zeroes for this run (sft.embedding_plan on its rows)."""
    cfg = ckpt["config"]
    base_dead = load_model(cfg["init_from"])[1]["model_args"]["dead_tokens"]
    sft_cfg = sft.SFTConfig(**{k: v for k, v in cfg.items() if k in sft.SFTConfig.__dataclass_fields__})
    train, val = sft.load_examples(sft_cfg, sft.check_data(sft_cfg))
    if cfg.get("replay"):
        train = train + sft.make_replay_examples(round(cfg["replay"] * len(train)), cfg["seed"] + 7)
    block = ckpt["model_args"]["block_size"]
    (x, y), (vx, vy) = sft.pack_examples(enc, train, cfg["format"], block), sft.pack_examples(enc, val, cfg["format"], block)
    return sft.embedding_plan(enc.n_vocab, base_dead, x, y, vx, vy)[2]


torch.set_num_threads(1)
engine.COMPILE_AFTER_ROW_TOKENS = float("inf")  # eager throughout: both readings run the same kernels
print("| checkpoint | unseen rows | " + " | ".join(p for p, _ in PROMPTS) + " |")
print("|---|---|" + "---|" * len(PROMPTS))
for path in sys.argv[1:]:
    model, ckpt, enc = load_model(path)
    unseen = unseen_tokens(ckpt, enc)
    rows = model.wte.weight.data
    trained = [carries(model, enc, ckpt["format"], p, c) for p, c in PROMPTS]
    rows[unseen] = 0.0
    zeroed = [carries(model, enc, ckpt["format"], p, c) for p, c in PROMPTS]
    print(f"| {path} | {len(unseen)} | " + " | ".join(f"{a:.2f} -> {b:.2f}" for a, b in zip(trained, zeroed)) + " |",
          flush=True)
