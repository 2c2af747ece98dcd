"""The SFT loss of an anchored checkpoint split in two: the annotation values the prompt pins, and
the response, averaged per token over the first 150 validation examples that pin a value. From the
repository root, the data folder first, then the checkpoints:

    python results/cpu-2026-12-07/pinned_loss.py runs/cpu/data runs/cpu/cpu-4l128/sft_anchored ...
"""
import sys, json, torch
sys.path.insert(0, ".")
from checkpoint import load_model
from tokenizer import encode_example
torch.set_num_threads(1)
exs = [json.loads(l) for l in open(sys.argv[1] + "/sft_val.jsonl")]
exs = [e for e in exs if e.get("constraints")][:150]
for path in sys.argv[2:]:
    m, c, enc = load_model(path, device="cpu")
    m.eval()
    tot = {"pinned": [0.0, 0], "response": [0.0, 0]}
    for e in exs:
        ids, mask = encode_example(enc, e, "anchored")
        _, mask_nopin = encode_example(enc, {**e, "train_pinned": False}, "anchored")
        x = torch.tensor([ids[:-1]]); y = torch.tensor(ids[1:])
        with torch.no_grad():
            logits, _ = m(x, x)
        nll = torch.nn.functional.cross_entropy(logits[0].float(), y, reduction="none")
        for t in range(len(ids) - 1):
            if mask[t + 1]:
                k = "pinned" if not mask_nopin[t + 1] else "response"
                tot[k][0] += float(nll[t]); tot[k][1] += 1
    print(path, {k: round(v[0] / max(v[1], 1), 3) for k, v in tot.items()}, {k: v[1] for k, v in tot.items()})
