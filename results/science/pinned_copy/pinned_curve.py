"""Where anchored SFT learns (or fails to learn) to copy the prompt's constraint into the
annotation: an SFT run of sft.py, unchanged, with the loss on the pinned annotation values and on
the response measured every --every steps on the first 100 validation examples that pin a value.
Run from the repository root with sft.py's own flags after the script's:

    python results/science/pinned_copy/pinned_curve.py OUT.jsonl EVERY -- --init_from runs/.../base_ann \
        --format anchored --out_dir ... --n_sft_examples 10000 --lr 1e-3 --seed 0
"""
import sys, json, re, torch
sys.path.insert(0, ".")
import sft
from tokenizer import encode_example, load_tokenizer

out_path, every = sys.argv[1], int(sys.argv[2])
sft_argv = sys.argv[sys.argv.index("--") + 1:]
data_dir = sft_argv[sft_argv.index("--data_dir") + 1]
enc = load_tokenizer(data_dir)
exs = [json.loads(l) for l in open(data_dir + "/sft_val.jsonl")]
exs = [e for e in exs if e.get("constraints")][:100]
rows = []  # (ids, {"pinned": target mask, "response": target mask, "pinned <field>": target mask})
for e in exs:
    ids, mask = encode_example(enc, e, "anchored")
    _, mask_nopin = encode_example(enc, {**e, "train_pinned": False}, "anchored")
    masks = {"pinned": [bool(mask[t + 1]) and not mask_nopin[t + 1] for t in range(len(ids) - 1)],
             "response": [bool(mask_nopin[t + 1]) for t in range(len(ids) - 1)]}
    for t, is_pinned in enumerate(masks["pinned"]):
        if is_pinned:  # the field: the key before the value, "... | setting:" -> setting
            field = re.findall(r"(\w+):", enc.decode(ids[:t + 1]))[-1]
            masks.setdefault("pinned " + field, [False] * (len(ids) - 1))[t] = True
    rows.append((ids, masks))

def measure(model):
    model = getattr(model, "_orig_mod", model)  # the eager GPT under torch.compile's wrapper
    was_training = model.training
    model.eval()
    tot = {}
    with torch.no_grad():
        for ids, masks in rows:
            x = torch.tensor([ids[:-1]]); y = torch.tensor(ids[1:])
            logits, _ = model(x, x)
            nll = torch.nn.functional.cross_entropy(logits[0].float(), y, reduction="none")
            for key, m in masks.items():
                m = torch.tensor(m)
                s, n = tot.get(key, (0.0, 0))
                tot[key] = (s + float(nll[m].sum()), n + int(m.sum()))
    model.train(was_training)
    return {k: round(s / max(n, 1), 4) for k, (s, n) in sorted(tot.items())}

calls = [0]
plain_loss = sft.mean_loss
def hooked_loss(model, batch):
    if calls[0] % every == 0:  # one micro-batch per step (grad_accum 1 in these runs)
        record = {"step": calls[0], **measure(model)}
        print("pinned curve", record, flush=True)
        with open(out_path, "a") as f:
            f.write(json.dumps(record) + "\n")
    calls[0] += 1
    return plain_loss(model, batch)
sft.mean_loss = hooked_loss
sft.main(sft_argv)
