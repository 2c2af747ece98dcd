"""Does the anchored arm write better stories when its title line is given?

For each anchored checkpoint and each of the two open evaluation prompts: K annotations sampled at
T = 1 (as eval_diversity.py samples them); of those that close with <|story|> and parse, the story
sampled twice at the cpu preset's story setting (top-p 0.9, no 8-token run twice, bf16): freely (the
model writes 'Title: ...' itself) and after a house title built from the sampled annotation by
world.make_title (forced). Prints the share of well-formed stories (judge.quality) and of those also
in the house format, each way, and the commonest problems.

    PYTHONPATH=. python results/science/forced_title/forced_title.py K CHECKPOINT [CHECKPOINT ...]
"""
import random, sys, torch, collections
from checkpoint import load_model
from sample import sample_annotations, inference_prefix, make_generator, _strip_stop
from engine import generate
from tokenizer import special_id, special_ids
from world import parse_annotation, make_title, TITLE_PREFIX
from judge import quality_problem, is_house_format
torch.set_num_threads(1)
K = int(sys.argv[1]); ckpts = sys.argv[2:]
for path in ckpts:
    m, cfg, enc = load_model(path, device='cpu')
    fmt = 'anchored'
    story = special_id(enc, "<|story|>"); pad = special_id(enc, "<|pad|>"); stops = set(special_ids(enc).values())
    gen = make_generator(torch.device('cpu'), 0)
    res = collections.Counter(); probs = {k: collections.Counter() for k in ('free', 'forced')}
    for prompt in ('Write a story.', 'Could you invent a little story for me?'):
        prefix = inference_prefix(enc, fmt, prompt, True, m.config.block_size)
        for start in range(0, K, 128):
            n = min(128, K - start)
            anns = sample_annotations(m, enc, [list(prefix)] * n, None, gen, dtype=torch.bfloat16, compile='off')
            rows = []
            for a in anns:
                if a[-1:] != [story]: continue
                try: parsed = parse_annotation(enc.decode(a[:-1]).strip())
                except Exception: parsed = None
                if parsed is None: continue
                rows.append((a, parsed))
            rng = random.Random(start)
            for mode in ('free', 'forced'):
                heads = []
                for a, parsed in rows:
                    h = list(prefix) + a
                    if mode == 'forced':
                        h += enc.encode_ordinary(TITLE_PREFIX + make_title(parsed, rng) + "\n\n")
                    heads.append(h)
                outs = generate(m, heads, 400, 1.0, None, 0.9, stop_ids=stops, generator=gen, pad_id=pad,
                                dtype=torch.bfloat16, no_repeat_ngram=8, compile='off')
                for (a, parsed), h, o in zip(rows, heads, outs):
                    text = enc.decode(h[len(prefix) + len(a):] + _strip_stop(o, stops)).strip()
                    p = quality_problem(text)
                    res[(mode, 'n')] += 1; res[(mode, 'good')] += p is None; res[(mode, 'q')] += p is None and is_house_format(text)
                    probs[mode][p] += 1
    print(path, ' '.join(f"{mode}: well-formed {res[(mode,'good')]/res[(mode,'n')]:.2f} q {res[(mode,'q')]/res[(mode,'n')]:.2f} (n {res[(mode,'n')]})" for mode in ('free','forced')))
    for mode in probs: print('   ', mode, probs[mode].most_common(6))
    sys.stdout.flush()
