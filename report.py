"""
The one home of tables and plots. First the report of one evaluation: the Markdown tables of
summary.md and the PNG plots, drawn from the summary dict that eval_diversity.evaluate returns (and
from its rows, for the label histograms); eval_diversity.write_outputs decides which file each goes
to. Then the results of a whole reproduction (reproduce.py): results.md, scaling.png and
controlled_study.png, drawn from the summaries of its evaluations. Nothing here samples or
measures: the numbers come from metrics.py.
"""
import io
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np

import world
from checkpoint import pyplot, save_figure, write_atomic
from metrics import MATCH_MIN_N, PROMPT_TYPES, UNKNOWN, agreement_min, label_entropy, prior_drift_max, stored_D

# -----------------------------------------------------------------------------
# summary.md

def _num(x, nd=2):
    # a number as the tables print it; None and inf/nan (a 0/0 ratio) as "n/a"
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{nd}f}"

def summary_markdown(summary) -> str:
    """summary.md: one table per prompt type, the per-field entropies, the headline ratios, the
    gate, the annotation prior, quality by typicality, the numbers over seeds and the exact D of the
    data, in that order.
    summary: summary.json's dict (a row: EvalRow.to_json)."""
    cfg = summary["config"]
    lines = [f"K = {cfg['num_samples']} samples per prompt, seed {cfg['seed']}; D = mean per-field entropy "
             f"(bits) of annotator labels over the prompt's free fields ('{UNKNOWN}' = unknown counts as a label).\n"]
    for prompt_type in PROMPT_TYPES:
        lines += prompt_type_markdown(summary, prompt_type)
    lines += field_entropy_markdown(summary) + ratios_markdown(summary)
    lines += gate_markdown(summary) + prior_markdown(summary) + typicality_markdown(summary) + seeds_markdown(summary)
    lines += exact_markdown(summary)
    return "\n".join(lines) + "\n"

def prompt_type_markdown(summary, prompt_type) -> list:
    """The main table of one prompt type: a line per row (D, collapse, quality, the gate...)."""
    rows = [r for r in summary["rows"] if prompt_type in r["by_kind"]]
    if not rows:
        return []
    coll = {}  # every seed's collapse numbers (seed 0's at the top level)
    for d in summary["derived"].get("per_seed", [summary["derived"]]):
        coll.update((d.get(prompt_type) or {}).get("collapse", {}))
    head = ("| row | fmt | T | D (bits) | D known | D good (n) | collapse [95% CI] | distinct/K | quality | house fmt "
            "| unknown | broken text | ann. parses | gate min |")
    sep = "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    carries = prompt_type == "constrained" and any("annotation_carries" in r["by_kind"][prompt_type] for r in rows)
    if prompt_type == "constrained":
        head, sep = head + " instr. follow | D compliant |", sep + "---|---|"
    if carries:  # summaries from before the measure have no column for it
        head, sep = head + " ann. carries |", sep + "---|"
    return ([f"**{prompt_type} prompts**\n", head, sep]
            + [_row_line(r, prompt_type, coll.get(r["row"]), carries) for r in rows] + [""])

def _row_line(r, prompt_type, c, carries=False) -> str:
    # one row's line of prompt_type_markdown; c: its collapse {"value", "ci95"} (None: the base row
    # itself); carries: add the annotation_carries column
    m = r["by_kind"][prompt_type]
    cs = f"{_num(c['value'])} [{_num(c['ci95'][0])}, {_num(c['ci95'][1])}]" if c else "-"
    t = "-" if r["temperature"] is None else f"{r['temperature']:g}"
    gate = agreement_min(r["gate"]) if r.get("gate") else None
    line = (f"| {r['row']} | {r.get('fmt', '-')} | {t} "
            f"| {_num(m['D'])} | {_num(m.get('D_known'))} | {_num(m.get('D_good'))} ({_num(m.get('n_good'), 0)}) "
            f"| {cs} | {_num(m['distinct_frac'])} | {_num(m['quality'])} | {_num(m['house_format'])} "
            f"| {_num(m['unknown_share'])} | {_num(m.get('broken_text'))} | {_num(m['annotation_valid'])} | {_num(gate)} |")
    if prompt_type == "constrained":
        line += f" {_num(m['instruction_following'])} | {_num(m.get('D_compliant'))} |"
    if carries:
        line += f" {_num(m.get('annotation_carries'))} |"
    return line

def field_entropy_markdown(summary) -> list:
    """Per-field label entropy of every row on the open prompts: which fields collapsed."""
    rows = [r for r in summary["rows"] if "open" in r["by_kind"]]
    if not rows:
        return []
    fields = list(world.FIELDS)
    lines = ["**per-field entropy (bits), open prompts**\n",
             "| row | " + " | ".join(fields) + " |", "|---|" + "---|" * len(fields)]
    for r in rows:
        ent = r["by_kind"]["open"]["entropy"]
        lines.append(f"| {r['row']} | " + " | ".join(_num(ent.get(f)) for f in fields) + " |")
    return lines + [""]

def ratios_markdown(summary) -> list:
    """Collapse ratio and gap closed (seed 0) with their intervals, one line per prompt type."""
    lines, d0 = [], summary["derived"]
    for prompt_type in PROMPT_TYPES:
        d = d0.get(prompt_type)
        if d and "collapse_ratio" in d:
            cr, gc = d["collapse_ratio"], d["gap_closed"]
            lines.append(f"- {prompt_type}: collapse ratio ({d0['sft_row']} / {d0['anchored_row']}) "
                         f"= {_num(cr['value'])} [95% CI {_num(cr['ci95'][0])}, {_num(cr['ci95'][1])}]; "
                         f"gap closed = {_num(gc['value'])} [95% CI {_num(gc['ci95'][0])}, {_num(gc['ci95'][1])}]")
    return lines

def exact_markdown(summary) -> list:
    """The exact D of the pretraining prior and of the SFT data (world.py), to read the *_data rows by."""
    lines, ex = [], summary["exact"]
    for prompt_type in PROMPT_TYPES:
        es = [e for e in ex["by_prompt"] if e["kind"] == prompt_type]
        if es:
            lines.append(f"- exact D, {prompt_type} prompts: pretraining prior {_num(np.mean([e['D_prior'] for e in es]))} bits, "
                         f"SFT data (narrowness {ex['narrowness']}) {_num(np.mean([e['D_sft_data'] for e in es]))} bits "
                         f"(a K-sample plug-in estimate is biased low: compare rows with the *_data rows, same K)")
    return lines

def gate_markdown(summary) -> list:
    """The gate before SFT: per field, does the story follow a non-favourite annotation value?"""
    rows = [r for r in summary["rows"] if r.get("gate")]
    if not rows:
        return []
    fields = [f for f in world.FIELDS if any(r["gate"][f]["n"] for r in rows)]
    out = ["\n**gate: annotation agreement** (share of samples whose story label equals their own annotation's "
           "value, over values outside the SFT favourites; n in brackets; target >= 0.8 on every field)\n",
           "| row | " + " | ".join(fields) + " | min |", "|---|" + "---|" * (len(fields) + 1)]
    for r in rows:
        g = r["gate"]
        out.append(f"| {r['row']} | " + " | ".join(f"{_num(g[f]['share'])} ({g[f]['n']})" for f in fields)
                   + f" | {_num(agreement_min(g))} |")
    return out + [""]

def prior_markdown(summary) -> list:
    """Prior drift: favourite share / entropy of the sampled annotation values, per field."""
    rows = [r for r in summary["rows"] if r.get("annotation_prior")]
    if not rows:
        return []
    exact = summary["exact_annotation_prior"]
    fields = [f for f in world.FIELDS if set(world.FIELDS[f]) - set(world.FAVOURITES[f])]  # length: all favourites
    out = ["**annotation prior: favourite share / entropy (bits) of the sampled annotation values** "
           "(fields the prompt leaves free)\n",
           "| row | " + " | ".join(fields) + " |", "|---|" + "---|" * len(fields),
           "| exact prior | " + " | ".join(f"{_num(exact[f]['fav_share'])} / {_num(exact[f]['entropy'])}" for f in fields) + " |"]
    for r in rows:
        a = r["annotation_prior"]
        out.append(f"| {r['row']} | " + " | ".join(
            f"{_num(a[f]['fav_share'])} / {_num(a[f]['entropy'])}" if f in a else "-" for f in fields) + " |")
    return out + [""]

def typicality_markdown(summary) -> list:
    """Quality by typicality (how many fields hold the SFT data's top favourite), per row."""
    rows = [r for r in summary["rows"] if r.get("typicality")]
    if not rows:
        return []
    bins = [b["favourites"] for b in rows[0]["typicality"]]
    out = ["**quality by typicality: well-formed / also in the house format (n)**, every prompt's samples, "
           "binned by how many of the 9 fields hold the SFT data's top favourite (judge labels)\n",
           "| row | " + " | ".join(f"{b} favourites" for b in bins) + " |", "|---|" + "---|" * len(bins)]
    for r in rows:
        out.append(f"| {r['row']} | " + " | ".join(
            f"{_num(b['quality'])} / {_num(b['quality_and_house'])} ({b['n']})" for b in r["typicality"]) + " |")
    return out + [""]

def seeds_markdown(summary) -> list:
    """Every headline statistic over seeds: median, each seed's value, min, max, interval."""
    o = summary.get("over_seeds")
    if not o:
        return []
    out = [f"**headline over {o['n_seeds']} seed(s)** ({o['kind']} prompts; interval: {o['ci_method']})\n",
           "| statistic | median | per seed | min | max | 95% interval |", "|---|---|---|---|---|---|"]
    for k, v in o.items():
        if isinstance(v, dict):
            ci = v.get("ci95")
            out.append(f"| {k} | {_num(v['median'])} | {', '.join(_num(x) for x in v['per_seed'])} | {_num(v['min'])} "
                       f"| {_num(v['max'])} | {f'[{_num(ci[0])}, {_num(ci[1])}]' if ci else '-'} |")
    return out + [""]

# -----------------------------------------------------------------------------
# plots

# One colour and marker per arm, in every plot. Every arm has its own colour, but for the sweeps:
# sft_sweep and anchored_sweep are the sft and anchored checkpoints at other temperatures, so
# they keep their checkpoint's colour with a marker of their own. An arm not listed gets the next
# free colour (and the plain marker).
ARM_STYLE = {
    "base": ("#000000", "o"), "base_annotated": ("#7f7f7f", "s"),
    "sft": ("#d62728", "v"), "sft_sweep": ("#d62728", "<"),
    "anchored": ("#1f77b4", "^"), "anchored_sweep": ("#1f77b4", ">"),
    "anchored_replay": ("#17becf", "D"), "anchored_kl": ("#8c6d31", "x"), "anchored_pretrain_mix": ("#393b79", "8"), "anchored_pinned": ("#9467bd", "P"),
    "anchored_plain_base": ("#ff7f0e", "d"), "anchored_no_annotation": ("#8c564b", "X"),
    "anchored_strict": ("#2ca02c", "*"), "anchored_unmasked": ("#e377c2", "h"),
    "pretrain_data": ("#bcbd22", "p"), "sft_data": ("#f7b6d2", "H"),
}
_EXTRA = ["#aec7e8", "#98df8a", "#c5b0d5", "#c49c94", "#dbdb8d", "#9edae5", "#ffbb78"]
_extra_style = {}

def arm_style(arm):
    """(colour, marker) of an arm: a row's "arm", never decoded from its name."""
    if arm in ARM_STYLE:
        return ARM_STYLE[arm]
    return _extra_style.setdefault(arm, (_EXTRA[len(_extra_style) % len(_EXTRA)], "o"))

def _legend_outside(ax, **kw):
    # beside the axes, so it covers no data (tight_layout makes room for it)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, **kw)

def plot_prior_drift(summary, path):
    """Per field: favourite share and entropy of the sampled annotation values, exact prior vs the
    annotated base vs every anchored row (is p(annotation) kept through SFT?)."""
    plt = pyplot()
    fields = [f for f in world.FIELDS if set(world.FIELDS[f]) - set(world.FAVOURITES[f])]
    series = [("exact prior", None, summary["exact_annotation_prior"])]
    series += [(r["row"], r["arm"], r["annotation_prior"]) for r in summary["rows"] if r.get("annotation_prior")]
    fig, axes = plt.subplots(1, 2, figsize=(max(10, 1.6 * len(fields)), 4.5))
    w = 0.8 / len(series)
    for ax, key, label in ((axes[0], "fav_share", "favourite share"), (axes[1], "entropy", "entropy (bits)")):
        for i, (name, arm, stats) in enumerate(series):
            ys = [(stats.get(f) or {}).get(key) for f in fields]
            ax.bar(np.arange(len(fields)) + i * w - 0.4 + w / 2, [np.nan if y is None else y for y in ys], w,
                   label=name, color="#dddddd" if arm is None else arm_style(arm)[0], edgecolor="#444444", linewidth=0.3)
        ax.set_xticks(np.arange(len(fields)), fields, rotation=30)
        ax.set_ylabel(label)
    _legend_outside(axes[1])
    fig.suptitle("sampled annotation values: prior vs annotated base vs anchored (python eval_diversity.py)")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)

def plot_field_entropy(summary, path, prompt_type="open"):
    """Per-field label entropy, one bar per row, on the prompts of one type."""
    plt = pyplot()
    rows = [r for r in summary["rows"] if prompt_type in r["by_kind"]]
    fields = list(world.FIELDS)
    fig, ax = plt.subplots(figsize=(max(8, 1.2 * len(fields)), 4.5))
    w = 0.8 / max(1, len(rows))
    for i, r in enumerate(rows):
        ent = r["by_kind"][prompt_type]["entropy"]
        ax.bar(np.arange(len(fields)) + i * w - 0.4 + w / 2, [ent.get(f, 0.0) for f in fields], w, label=r["row"],
               color=arm_style(r["arm"])[0], alpha=1.0 if r["row"] == r["arm"] else 0.6)
    ax.set_xticks(np.arange(len(fields)), fields)
    ax.set_ylabel("entropy (bits)")
    ax.set_title(f"per-field label entropy, {prompt_type} prompts, K={summary['config']['num_samples']}")
    _legend_outside(ax)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)

def pooled_samples(row, prompts, prompt_type) -> list:
    """An EvalRow's samples pooled over the prompts of one type (a base row's one sample set, once)."""
    if None in row.samples:
        return row.samples[None]
    return [s for pi, p in enumerate(prompts) if p["kind"] == prompt_type for s in row.samples[pi]]

def plot_label_histograms(rows, prompts, names, path, fields=("name", "setting"), prompt_type="open"):
    """Label counts of some fields for a few rows ({name: EvalRow}) side by side, on one prompt type."""
    plt = pyplot()
    names = [n for n in names if n is not None and n in rows]
    ncol = max(1, len(names))
    fig, axes = plt.subplots(len(fields), ncol, figsize=(5 * ncol, 3.2 * len(fields)), squeeze=False)
    for i, f in enumerate(fields):
        values = list(world.FIELDS[f]) + [UNKNOWN]
        for j, n in enumerate(names):
            samples, ax = pooled_samples(rows[n], prompts, prompt_type), axes[i][j]
            c = Counter(UNKNOWN if s["labels"][f] is None else s["labels"][f] for s in samples)
            ax.bar(range(len(values)), [c.get(v, 0) for v in values], color=arm_style(rows[n].arm)[0])
            h = label_entropy([s["labels"][f] for s in samples])
            ax.set_title(f"{n}: {f} (H = {h:.2f} bits, n = {len(samples)})", fontsize=9)
            ax.set_xticks(range(len(values)), values, rotation=90, fontsize=5)
    fig.suptitle(f"label histograms, {prompt_type} prompts")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)

def plot_quality_diversity(summary, path, prompt_type="open"):
    """Quality (judge.quality) vs D; rows of one arm at several temperatures drawn as a curve."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    by_arm = {}
    for r in summary["rows"]:
        if prompt_type in r["by_kind"]:
            by_arm.setdefault(r["arm"], []).append(r)
    for arm, rs in by_arm.items():
        rs = sorted(rs, key=lambda r: r["temperature"] or 0)
        xs = [r["by_kind"][prompt_type]["D"] for r in rs]
        ys = [r["by_kind"][prompt_type]["quality"] for r in rs]
        color, marker = arm_style(arm)
        ax.plot(xs, ys, marker=marker, linestyle="-" if len(rs) > 1 else "none", color=color, label=arm)
        for r, x, y in zip(rs, xs, ys):
            if len(rs) > 1:
                ax.annotate(f"T={r['temperature']:g}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(f"semantic diversity D (bits, {prompt_type} prompts)")
    ax.set_ylabel("quality rate (judge.quality)")
    ax.set_title("quality vs diversity")
    _legend_outside(ax)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)

# -----------------------------------------------------------------------------
# results of a reproduction (reproduce.py): every size's evaluation and the controlled study side
# by side, as results.md, scaling.png and controlled_study.png

def seed_stat(summary, key):
    """(median over seeds, ci95 or None) of a headline statistic of one evaluation (open prompts)."""
    o = summary.get("over_seeds", {}).get(key) or {}
    return o.get("median"), o.get("ci95")

def with_ci(summary, key):
    med, ci = seed_stat(summary, key)
    return _num(med) + (f" ({_num(ci[0])}, {_num(ci[1])})" if ci else "")

def sft_data_entropy(summary, prompt_type="open"):
    """Exact mean free-field entropy of the SFT data for the prompts of this type."""
    vals = [p["D_sft_data"] for p in summary["exact"]["by_prompt"] if p["kind"] == prompt_type]
    return sum(vals) / len(vals)

def row_D(summary, name, prompt_type="open", known=False):
    """D (known: D_known) of a summary's row on one prompt type, as the row holds it: the one stored
    D (nan: no such row, or not measured there)."""
    return stored_D(next((r["by_kind"] for r in summary["rows"] if r["row"] == name), None), prompt_type, known)

def study_D(summary, which):
    """D on open prompts of the summary's SFT, anchored or base row (at T = 1 when swept)."""
    return row_D(summary, summary["derived"][which])

def results_markdown(size_results, study, cfg, command) -> str:
    """results.md: the headline per size (medians over seeds), every row at the largest size, the
    controlled study. size_results: [(size, summary)]; study: [(narrowness, summary)]."""
    seeds = sorted({(s.get("over_seeds") or {}).get("n_seeds", len(cfg.get("sft_seeds", [0]))) for _, s in size_results})
    over = (f"{seeds[0]} SFT seed(s)" if len(seeds) == 1 else  # the cpu preset: seeds at the largest size only
            f"{' or '.join(map(str, seeds))} SFT seeds (the largest size has the most)")
    lines = [f"Made by `{command}`.", "",
             f"### Headline (open prompts, T = 1; median over {over}, 95% interval over seeds and samples)", "",
             "| size | D base | D SFT | D anchored | gap closed | gap closed, unknown dropped | collapse ratio | "
             "quality SFT / anchored | instr. following SFT / anchored | gate min (annotated base) | prior drift max |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for size, s in size_results:
        d = lambda which: _num(study_D(s, which))
        pair = lambda a, b: f"{_num(seed_stat(s, a)[0])} / {_num(seed_stat(s, b)[0])}"
        lines.append(f"| {size} | {_num(row_D(s, 'base'))} | {d('sft_row')} | {d('anchored_row')} | "
                     f"{with_ci(s, 'gap_closed')} | {with_ci(s, 'gap_closed_known')} | "
                     f"{with_ci(s, 'collapse_ratio')} | {pair('quality_sft', 'quality_anchored')} | "
                     f"{pair('instruction_sft', 'instruction_anchored')} | {_num(seed_stat(s, 'base_agreement_min')[0])} | "
                     f"{_num(seed_stat(s, 'prior_drift_max')[0])} |")
    lines += ["", "D columns: the first seed's rows. Per-seed values: each size's headline.json.", ""]
    lines += quality_matched_markdown(size_results)
    lines += ["### Every row at the largest size (open prompts, first seed)", "",
              "| row | D | D, unknown dropped | collapse vs base |", "|---|---|---|---|"]
    size, s = size_results[-1]
    collapse = s["derived"]["open"]["collapse"]
    for r in s["rows"]:
        if "open" in r["by_kind"] and r.get("seed_index") in (None, 0):  # the first seed's and the shared rows
            col = collapse.get(r["row"], {}).get("value")
            lines.append(f"| {r['row']} | {_num(row_D(s, r['row']))} | {_num(row_D(s, r['row'], known=True))} "
                         f"| {_num(col)} |")
    if study:
        lines += ["", f"### Controlled study ({cfg['study_size']}, open prompts)", "",
                  "| narrowness | SFT data entropy (exact) | D SFT | D anchored |", "|---|---|---|---|"]
        for nu, s in study:
            lines.append(f"| {nu} | {_num(sft_data_entropy(s))} | {_num(study_D(s, 'sft_row'))} | "
                         f"{_num(study_D(s, 'anchored_row'))} |")
    return "\n".join(lines) + "\n"

def quality_matched_markdown(size_results) -> list:
    """results.md's table of quality on the same kind of story (metrics.quality_matched, medians
    over seeds), for the sizes whose summaries have it (none made before it: no table)."""
    sizes = [(size, s) for size, s in size_results if seed_stat(s, "quality_matched_sft")[0] is not None]
    if not sizes:
        return []
    pair = lambda s, a, b: f"{_num(seed_stat(s, a)[0])} / {_num(seed_stat(s, b)[0])}"
    return (["### Quality at matched typicality (well-formed, house format; median over seeds)", "",
             "Every prompt's samples binned by how many fields hold the SFT data's top favourite; the bins "
             f"both arms fill (>= {MATCH_MIN_N} samples each, each seed its own), weighted like the anchored "
             "row (metrics.quality_matched).", "",
             "| size | SFT / anchored, open prompts (the headline's) | SFT / anchored, every prompt, matched |",
             "|---|---|---|"]
            + [f"| {size} | {pair(s, 'quality_sft', 'quality_anchored')} | "
               f"{pair(s, 'quality_matched_sft', 'quality_matched_anchored')} |" for size, s in sizes] + [""])

SCALING_ROWS = ["base", "base_annotated", "sft", "anchored", "anchored_replay", "anchored_kl", "anchored_pretrain_mix", "anchored_no_annotation",
                "anchored_plain_base", "anchored_unmasked", "anchored_strict", "pretrain_data", "sft_data"]

def plot_scaling(size_results, path):
    """D per arm vs model size, and collapse ratio and gap closed (medians over seeds) vs size."""
    plt = pyplot()
    sizes = [s for s, _ in size_results]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for row in SCALING_ROWS:
        # "sft" and "anchored" are swept over temperatures: their T = 1 rows are derived["sft_row"] etc.
        ys = [row_D(summary, summary["derived"].get(f"{row}_row", row))
              for _, summary in size_results]  # nan: an arm not run at this size (a gap in the line)
        color, marker = arm_style(row)
        axes[0].plot(sizes, ys, marker=marker, color=color, label=row, linestyle="--" if row.endswith("_data") else "-")
    axes[0].set_ylabel("semantic diversity D (bits, open prompts)")
    _legend_outside(axes[0])
    for ax, key in ((axes[1], "collapse_ratio"), (axes[2], "gap_closed")):
        for variant, marker in ((key, "o"), (f"{key}_known", "s")):  # median over seeds, open prompts
            ys = [seed_stat(summary, variant)[0] for _, summary in size_results]
            ax.plot(sizes, [math.nan if y is None else y for y in ys], marker=marker,
                    label="unknown labels dropped" if variant.endswith("_known") else "unknown as a label")
        ax.set_ylabel(key.replace("_", " ") + " (median over seeds)")
    _legend_outside(axes[2])
    for ax in axes:
        ax.set_xlabel("model size (preset)")
        ax.grid(alpha=0.3)
    fig.suptitle("Diversity vs model size (python reproduce.py)")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)

def plot_study(study, path):
    """Output diversity vs the SFT data's exact entropy, one point per narrowness setting."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    xs = [sft_data_entropy(s) for _, s in study]
    for row in ("sft_row", "anchored_row", "base_row"):
        color, marker = arm_style(row[:-4])
        ax.plot(xs, [study_D(s, row) for _, s in study], marker=marker, color=color, label=row[:-4])
    lo, hi = min(xs), max(xs)
    ax.plot([lo, hi], [lo, hi], color="grey", linestyle=":", label="output = data")
    ax.set_xlabel("SFT data entropy (bits, exact, open prompts)")
    ax.set_ylabel("output diversity D (bits)")
    ax.set_title("Controlled study: narrower SFT data")
    _legend_outside(ax)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)

def write_results(out, evals, study, cfg, command, wall_seconds):
    """A reproduction's results folder: results.md, scaling.png, controlled_study.png (with a study),
    each size's evaluation outputs and headline.json (the largest size's, with the wall time).
    evals: {size: eval folder}; study: {narrowness: eval folder}."""
    read = lambda d: json.loads((Path(d) / "summary.json").read_text())
    size_results, study = [(size, read(d)) for size, d in evals.items()], [(nu, read(d)) for nu, d in study.items()]
    plot_scaling(size_results, out / "scaling.png")
    if study:
        plot_study(study, out / "controlled_study.png")
    write_atomic(out / "results.md", results_markdown(size_results, study, cfg, command))
    for size, d in evals.items():  # every file of the evaluation but its job marker
        (out / size).mkdir(exist_ok=True)
        for f in Path(d).glob("*"):
            if f.suffix in (".json", ".md", ".png", ".gz") and not f.name.startswith("."):
                write_atomic(out / size / f.name, f.read_bytes())
    largest = list(evals)[-1]  # the headline: its numbers (median and per seed) and the wall time
    head = json.loads((Path(evals[largest]) / "headline.json").read_text())
    head.update(size=largest, wall_seconds=wall_seconds)
    write_atomic(out / "headline.json", json.dumps(head, indent=1))

# -----------------------------------------------------------------------------
# a base's learning curve: its evaluations at checkpoints along one pretraining run

def curve_points(run_dir):
    """[(step, slots trained, {row: {quality, gate_min, D, D_good, n_good}})] from run_dir/curve/step*/
    summary.json (eval_diversity.py of each snapshot; rows sampled at T = 1 and at other settings) and
    run_dir/log.jsonl (slots trained by each step)."""
    slots = {}
    for line in (Path(run_dir) / "log.jsonl").read_text().splitlines():
        r = json.loads(line)
        slots[r["step"]] = r.get("slots", slots.get(r["step"]))
    points = []
    for f in sorted((Path(run_dir) / "curve").glob("step*/summary.json"), key=lambda p: int(p.parent.name[4:])):
        step, summary = int(f.parent.name[4:]), json.loads(f.read_text())
        rows = {r["row"]: {"quality": r["by_kind"]["open"]["quality"], "D": r["by_kind"]["open"]["D"],
                           "D_good": r["by_kind"]["open"]["D_good"], "n_good": r["by_kind"]["open"]["n_good"],
                           "gate_min": agreement_min(r["gate"]) if r.get("gate") else None}
                for r in summary["rows"] if r.get("role") == "base"}
        points.append((step, slots.get(step), rows))
    return points

def curve_markdown(points) -> str:
    """One line per checkpoint: well-formed stories and the gate's smallest field, per sampling row."""
    names = list(points[0][2]) if points else []
    head = "| step | slots trained | " + " | ".join(f"{n}: quality / gate min / D good (n)" for n in names) + " |"
    lines = [head, "|---|---|" + "---|" * len(names)]
    for step, slots, rows in points:
        cells = [f"{_num(rows[n]['quality'])} / {_num(rows[n]['gate_min'])} / {_num(rows[n]['D_good'])} "
                 f"({_num(rows[n]['n_good'], 0)})" for n in names]
        lines.append(f"| {step} | {slots or 0:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"

def plot_curve(points, path, title):
    """Quality and gate min vs trained slots, one line per sampling row."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    names = list(points[0][2]) if points else []
    xs = [(slots or 0) / 1e6 for _, slots, _ in points]
    for i, n in enumerate(names):
        for ax, key in ((axes[0], "quality"), (axes[1], "gate_min")):
            ys = [math.nan if rows[n][key] is None else rows[n][key] for _, _, rows in points]
            ax.plot(xs, ys, marker="os^"[i % 3], color=f"C{i}", label=n)
    for ax, label in ((axes[0], "well-formed stories (judge.quality)"), (axes[1], "gate: smallest field's agreement")):
        ax.set_xlabel("row slots trained (millions)")
        ax.set_ylabel(label)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    _legend_outside(axes[1])
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)

def write_curve(run_dir, out_dir, title):
    """learning_curve.md and learning_curve.png of run_dir's snapshots into out_dir."""
    points = curve_points(run_dir)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    write_atomic(Path(out_dir) / "learning_curve.md", curve_markdown(points))
    plot_curve(points, Path(out_dir) / "learning_curve.png", title)
    return points

# -----------------------------------------------------------------------------
# SFT length: one evaluation of SFT runs that differ only by how many examples they saw

def sft_curve_points(summary, arms=("sft", "anchored"), annotated_base="base_annotated"):
    """[(examples seen, {arm: numbers})] from one evaluation whose rows are named <arm>_n<examples>
    (e.g. anchored_n20000): quality (well-formed, house format), instruction following, D, D_good
    and its n (open prompts); for annotated rows the annotations that parse and prior_drift_max
    against the annotated_base row."""
    rows = {r["row"]: r for r in summary["rows"]}
    base_prior = (rows.get(annotated_base) or {}).get("annotation_prior")
    points = {}
    for name, r in rows.items():
        arm, _, n = name.rpartition("_n")
        if arm not in arms or not n.isdigit():
            continue
        o, c = r["by_kind"]["open"], r["by_kind"].get("constrained", {})
        prior = r.get("annotation_prior")
        points.setdefault(int(n), {})[arm] = {
            "quality": o["quality_and_house"], "instruction": c.get("instruction_following"), "D": o["D"],
            "D_good": o["D_good"], "n_good": o["n_good"], "parses": o.get("annotation_valid"),
            "drift": prior_drift_max(prior, base_prior) if prior and base_prior else None}
    return sorted(points.items())

def sft_curve_markdown(points, arms=("sft", "anchored")) -> str:
    """One line per SFT length: each arm's quality / instruction following / D, then the anchored
    arm's D over good stories, parses and drift."""
    head = ("| SFT examples seen | " + " | ".join(f"{a}: quality / instr. / D" for a in arms)
            + f" | {arms[-1]}: D good (n) / parses / drift |")
    lines = [head, "|---|" + "---|" * (len(arms) + 1)]
    for n, by_arm in points:
        cells = [" / ".join(_num(by_arm.get(a, {}).get(k)) for k in ("quality", "instruction", "D")) for a in arms]
        last = by_arm.get(arms[-1], {})
        cells.append(f"{_num(last.get('D_good'))} ({_num(last.get('n_good'), 0)}) / {_num(last.get('parses'))} / "
                     f"{_num(last.get('drift'))}")
        lines.append(f"| {n:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"

def plot_sft_curve(points, path, title, base_D=None, arms=("sft", "anchored")):
    """Quality, D and (for the last arm) drift against SFT examples seen, log x."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    xs = [n for n, _ in points]
    get = lambda a, k: [math.nan if by.get(a, {}).get(k) is None else by[a][k] for _, by in points]
    for a in arms:
        colour, marker = arm_style(a)
        style = dict(marker=marker, color=colour, label=a)
        axes[0].plot(xs, get(a, "quality"), **style)
        axes[1].plot(xs, get(a, "D"), **style)
    if base_D is not None:
        axes[1].axhline(base_D, color="grey", ls="--", label="base")
    axes[2].plot(xs, get(arms[-1], "drift"), marker="o", color="C3", label="prior drift max")
    axes[2].plot(xs, get(arms[-1], "parses"), marker="s", color="C2", label="annotations parse")
    for ax, label in zip(axes, ("quality (well-formed, house format)", "D (bits, open prompts)", arms[-1])):
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(xs, [f"{n:,}" for n in xs])
        ax.set_xlabel("SFT examples seen")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylim(0, 1)
    axes[2].set_ylim(0, 1)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
