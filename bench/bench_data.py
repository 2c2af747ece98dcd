"""
Throughput of the synthetic world on one core: stories generated/s, annotated/s, quality-checked/s,
tokenizer training time and tokens encoded/s (through tokenizer.encode_example, the path the dataset
build uses). Best of --repeats runs, so a busy machine disturbs the figures less. Then the world's
acceptance numbers on the same fresh stories: annotation round trip, quality accept/reject rates,
SFT round trip, word types and sentence templates.

    python bench/bench_data.py              # the README figures
    python bench/bench_data.py --n 5000     # quicker
"""

import argparse
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import grammar  # noqa: E402
import judge  # noqa: E402
import tokenizer  # noqa: E402
import world  # noqa: E402


def best_rate(fn, n, repeats):
    """Items per CPU-second of this process (≈ per core: the machine is shared, so wall time would
    also count other people's jobs), best of `repeats` runs."""
    best = 0.0
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        best = max(best, n / max(time.process_time() - t0, 1e-9))
    return best


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=20000, help="stories per timed run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

    rng = random.Random(a.seed)
    anns = [world.sample_annotation(rng) for _ in range(a.n)]
    stories = [grammar.render_story(x, rng) for x in anns]
    docs = [{"story": s, "annotation": x} for s, x in zip(stories, anns)]

    res = {"n": a.n}
    res["sample_annotation_per_s"] = best_rate(lambda: [world.sample_annotation(rng) for _ in range(a.n)], a.n, a.repeats)
    res["stories_generated_per_s"] = best_rate(lambda: [grammar.render_story(x, rng) for x in anns], a.n, a.repeats)
    res["stories_annotated_per_s"] = best_rate(lambda: [judge.annotate(s) for s in stories], a.n, a.repeats)
    res["stories_quality_checked_per_s"] = best_rate(lambda: [judge.quality(s) for s in stories], a.n, a.repeats)

    t0 = time.process_time()
    enc = tokenizer.train_tokenizer(stories[:20000] + [world.format_annotation(x) for x in anns[:20000]], 2048)
    res["tokenizer_train_cpu_s"] = time.process_time() - t0
    n_tok = sum(len(tokenizer.encode_example(enc, d, "annotated")[0]) for d in docs)
    res["tokens_per_story_annotated"] = n_tok / a.n
    res["tokens_encoded_per_s"] = best_rate(lambda: [tokenizer.encode_example(enc, d, "annotated") for d in docs],
                                            n_tok, a.repeats)
    # the acceptance numbers of the world, on fresh stories
    agree = {f: sum(judge.annotate(s)[f] == x[f] for s, x in zip(stories[:5000], anns[:5000])) / 5000
             for f in world.FIELDS}
    res["round_trip_all_fields_pct"] = 100 * sum(agree.values()) / len(agree)
    for f in ("character", "name", "setting"):
        res[f"round_trip_{f}_pct"] = 100 * agree[f]
    # a sloppy "model sample": 15% of the words dropped, 5% of adjacent pairs swapped
    nrng = random.Random(a.seed + 2)
    noisy_agree = 0
    for s, x in zip(stories[:5000], anns[:5000]):
        w = [t for t in s.split() if nrng.random() > 0.15]
        for i in range(len(w) - 1):
            if nrng.random() < 0.05:
                w[i], w[i + 1] = w[i + 1], w[i]
        got = judge.annotate(" ".join(w))
        noisy_agree += sum(got[f] == x[f] for f in world.FIELDS if f != "length")
    res["noisy_round_trip_pct_no_length"] = 100 * noisy_agree / (5000 * (len(world.FIELDS) - 1))
    res["quality_accept_clean_pct"] = 100 * sum(map(judge.quality, stories[:5000])) / 5000
    crng = random.Random(a.seed + 1)
    bad = [world.corrupt(s, x, crng)[0] for s, x in zip(stories[:5000], anns[:5000])]
    res["quality_reject_corrupted_pct"] = 100 * sum(not judge.quality(t) for t in bad) / 5000
    sft = world.make_sft_examples(2000, world.DEFAULT_NARROWNESS, a.seed)
    res["sft_round_trip_all_fields_pct"] = 100 * sum(judge.annotate(e["response"])[f] == e["annotation"][f]
                                                     for e in sft for f in world.FIELDS) / (2000 * len(world.FIELDS))
    res["sft_quality_and_house_pct"] = 100 * sum(judge.quality(e["response"]) and judge.is_house_format(e["response"])
                                                 for e in sft) / 2000
    words = set(w for s in stories for w in s.lower().translate(judge._WORDS_TABLE).split())
    res["word_types"] = len(words)
    res["sentence_templates"] = grammar.count_templates()
    for k, v in res.items():
        print(f"{k:32s} {v:>12,.1f}" if isinstance(v, float) else f"{k:32s} {v:>12,}")
    print(json.dumps({k: round(v, 2) for k, v in res.items()}))


if __name__ == "__main__":
    main()
