# prior drift at 5,000 annotations per row: run from the repository root with PYTHONPATH=. (the results/README.md entry of 2026-12-02 has the same code inline)
import json, sys, torch, metrics, world
from checkpoint import load_model
from sample import sample_annotation_texts
torch.set_num_threads(1)
R, N = sys.argv[1], 5000
open_prompts = [p['prompt'] for p in json.load(open('runs/cpu/data/eval_prompts.json')) if p['kind'] == 'open']
def prior(ckpt, prompts, seed):
    model, c, enc = load_model(f'{R}/{ckpt}', device='cpu')
    anns = [a for p in prompts for a in sample_annotation_texts(model, enc, c['format'], p, N // len(prompts),
                                                                 seed=seed, dtype=torch.bfloat16)]
    return metrics.annotation_prior({f: [{'annotation': a} for a in anns] for f in world.FIELDS})
base = prior('base_ann', [None], 1)
for arm in sys.argv[2:]:
    a = prior(arm, open_prompts, 2)
    print(arm, *(round(x, 3) for x in (metrics.prior_drift_max(a, base), metrics.prior_drift_floor(a, base),
          metrics.prior_drift_floor(a, base, 0.95))), flush=True)
