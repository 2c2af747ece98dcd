"""
Sample stories from a checkpoint.

    python sample.py --ckpt out/anchored --prompt "Write a story." --num_samples 5
    python sample.py --ckpt out/anchored --annotation "name: Mia | setting: desert"   # pin some fields
    python sample.py --ckpt out/anchored --anchor off                                 # the paper's ablation

Anchored checkpoints (format anchored / anchored_unmasked, and the annotated base) first sample an
annotation after <|ann|> at temperature 1 (as in the paper, so the annotation keeps the model's
prior diversity), then the story after <|story|> at --temperature. Base checkpoints see no prompt:
they are prompted in their own document format (<|bos|><|story|> or <|bos|><|ann|>).
"""
import argparse
import os
import sys

import torch

from checkpoint import load_model
from device import add_device_flags, check_device, make_generator, pick_dtype
from engine import COMPILE_FLAG, generate
from tokenizer import (ANNOTATED_FORMATS, BASE_FORMATS, FORMATS, annotation_pieces, prompt_ids,
                       resolve_anchor, separator_ids, special_id, special_ids)
from world import annotation_keys, parse_annotation

ANN_TEMPERATURE = 1.0   # the annotation is sampled at temperature 1, whatever --temperature says
ANN_MAX_TOKENS = 96     # a full annotation is ~40 tokens; a model that never closes it is cut here
FIELD_MAX_TOKENS = 12   # tokens for one free field's value when building a pinned annotation

# -----------------------------------------------------------------------------
# sampling

def _strip_stop(ids, stops):
    return ids[:-1] if ids and ids[-1] in stops else ids

def sample_annotations(model, enc, prefixes, pinned, generator, by_field=False, dtype=None,
                       compile="auto", quality_tag=False) -> list:
    """Annotation ids for each prefix ending in <|ann|>, ending in <|story|> where the model closed it.
    No pins (and not by_field): the model writes the whole annotation and stops at <|story|>.
    Pins or by_field: built field by field in FIELDS order, batched over rows: pinned fields forced,
    free fields sampled by the model after a forced 'key:' (so the layout is always well formed),
    then, for a model trained with the quality tag (quality_tag), the tag: pinned or sampled."""
    pad, specials = special_id(enc, "<|pad|>"), set(special_ids(enc).values())
    if not pinned and not by_field:
        # the annotation ends at <|story|>, or at any other special token (then it is cut there)
        outs = generate(model, prefixes, ANN_MAX_TOKENS, ANN_TEMPERATURE, stop_ids=specials,
                        generator=generator, pad_id=pad, dtype=dtype, compile=compile)
        story = special_id(enc, "<|story|>")  # kept when the model closed its annotation itself
        return [o if o[-1:] == [story] else _strip_stop(o, specials) for o in outs]
    stops = separator_ids(enc) | specials
    anns = [[] for _ in prefixes]
    # the pieces come from tokenizer.py, the same ones training masks with: ' | key:' then ' value'
    for f, key, value in annotation_pieces(enc.encode_ordinary, pinned, list(annotation_keys(quality_tag))):
        for a in anns:
            a += key  # the canonical separator and key, whatever token ended the last value
        if value is not None:
            for a in anns:
                a += value
        else:
            outs = generate(model, [p + a for p, a in zip(prefixes, anns)], FIELD_MAX_TOKENS, ANN_TEMPERATURE,
                            stop_ids=stops, generator=generator, pad_id=pad, dtype=dtype, compile=compile)
            for a, o in zip(anns, outs):
                a += _strip_stop(o, stops)
    return [a + [special_id(enc, "<|story|>")] for a in anns]  # built whole: closed by construction

def model_device(model) -> torch.device:
    return next(model.parameters()).device

def inference_prefix(enc, format, prompt, use_ann, block) -> list:
    """The ids generation starts from, built by tokenizer.py's one format function. A base format
    sees no prompt (its own document start); an SFT format needs one."""
    if format not in FORMATS:
        raise ValueError(f"unknown checkpoint format {format!r}; valid: {FORMATS}")
    if format in BASE_FORMATS:
        prefix = prompt_ids(enc, format, anchor=use_ann)
    else:
        if not prompt or not prompt.strip():
            raise ValueError("empty prompt: an SFT checkpoint needs an instruction, e.g. --prompt 'Write a story.'")
        prefix = prompt_ids(enc, format, prompt, anchor=use_ann)
    if len(prefix) >= block:
        raise ValueError(f"prompt is {len(prefix)} tokens, too long for the context of {block} tokens; shorten it")
    return prefix

@torch.inference_mode()
def sample_many(model, enc, format, prompts, n, *, temperature=1.0, top_k=None, top_p=None, seed=0,
                max_new_tokens=None, anchor=True, pinned=None, batch_size=64, ann_by_field=False,
                dtype=None, no_repeat_ngram=None, compile="auto", quality_tag=False) -> list:
    """n samples for each of several prompts, [[sample of prompt 0, ...], ...], drawn in shared
    batches of batch_size rows (prompt 0's n rows, then prompt 1's, ...): one generate call can hold
    several prompts, which a GPU runs about as fast as one. dtype: the autocast dtype of generation
    (device.pick_dtype; None = fp32). no_repeat_ngram: the story's n-gram ban (engine.NoRepeat; the
    annotation is never banned). compile: engine.generate's (auto, on, off: the compiled decode
    step). quality_tag: the checkpoint's (checkpoint key quality_tag): its annotations end with a
    quality tag, which a built annotation (pins, ann_by_field) then ends with too. See sample_stories
    for the rest."""
    use_ann = anchor and format in ANNOTATED_FORMATS
    pinned = dict(pinned or {})
    if pinned and not use_ann:
        why = "it is sampled with --anchor off" if format in ANNOTATED_FORMATS else f"its format {format!r} has no annotation"
        raise ValueError(f"cannot pin annotation fields on this checkpoint: {why} "
                         f"(pinning needs format {' / '.join(ANNOTATED_FORMATS)} with the annotation on)")
    keys = annotation_keys(quality_tag)
    for f, v in pinned.items():
        if f not in keys or v not in keys[f]:
            raise ValueError(f"pinned {f}={v!r} is not a field value of this checkpoint; fields: {', '.join(keys)}")
    block = model.config.block_size
    jobs = [(j, inference_prefix(enc, format, p, use_ann, block)) for j, p in enumerate(prompts) for _ in range(n)]
    story, pad = special_id(enc, "<|story|>"), special_id(enc, "<|pad|>")
    stops = set(special_ids(enc).values())
    max_new = max_new_tokens if max_new_tokens is not None else block
    gen = make_generator(model_device(model), seed)
    out = [[] for _ in prompts]
    for start in range(0, len(jobs), batch_size):
        batch = jobs[start:start + batch_size]
        prefixes = [list(prefix) for _, prefix in batch]
        anns = [None] * len(batch)
        if use_ann:
            anns = sample_annotations(model, enc, prefixes, pinned, gen, by_field=ann_by_field, dtype=dtype,
                                      compile=compile, quality_tag=quality_tag)
            closed = [a[-1:] == [story] for a in anns]
            anns = [a[:-1] if c else a for a, c in zip(anns, closed)]
            prefixes = [p + a + [story] for p, a in zip(prefixes, anns)]
        # every special token ends the story (not only <|eos|>): the judge reads the story alone
        outs = generate(model, prefixes, max_new, temperature, top_k, top_p, stop_ids=stops, generator=gen,
                        pad_id=pad, dtype=dtype, no_repeat_ngram=no_repeat_ngram, compile=compile)
        for i, ((j, _), a, o) in enumerate(zip(batch, anns, outs)):
            out[j].append({"annotation": None if a is None else enc.decode(a).strip(),
                           # did the model end its annotation with <|story|> (None: no annotation)
                           "annotation_closed": None if a is None else closed[i],
                           "text": enc.decode(_strip_stop(o, stops)).strip(),
                           "finished": bool(o) and o[-1] in stops,
                           # which special token ended it: <|eos|> is the clean end; any other cut it short
                           "stop": enc.decode([o[-1]]) if o and o[-1] in stops else None})
    return out

@torch.inference_mode()
def sample_annotation_texts(model, enc, format, prompt, n, *, seed=0, batch_size=128, dtype=None) -> list:
    """n annotations alone (their text, as sample_many records them), no story: what the annotation
    prior is measured on, at a fraction of a story's cost. The same draws as sample_many's first
    batch with the same seed and batch_size."""
    if format not in ANNOTATED_FORMATS:
        raise ValueError(f"format {format!r} has no annotation (need {' / '.join(ANNOTATED_FORMATS)})")
    prefix = inference_prefix(enc, format, prompt, True, model.config.block_size)
    story = special_id(enc, "<|story|>")
    gen = make_generator(model_device(model), seed)
    out = []
    for start in range(0, n, batch_size):
        anns = sample_annotations(model, enc, [list(prefix)] * min(batch_size, n - start), None, gen, dtype=dtype)
        out += [enc.decode(a[:-1] if a[-1:] == [story] else a).strip() for a in anns]
    return out

def sample_stories(model, enc, format, prompt, n, **kw) -> list:
    """n samples as [{"annotation": str|None, "text": str, "finished": bool, "stop": str|None}].
    format: the checkpoint's format. prompt: the instruction (ignored by base formats). anchor=False
    skips the annotation (the ablation). pinned: {field: value} forced into the annotation.
    max_new_tokens: response budget (None = fill the context). ann_by_field: force the annotation's
    keys and separators and let the model sample only the values (as with pins). Same seed => same
    samples. Keywords as sample_many."""
    return sample_many(model, enc, format, [prompt], n, **kw)[0]

# -----------------------------------------------------------------------------

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True, help="checkpoint directory (holding ckpt.pt)")
    p.add_argument("--prompt", default="Write a story.", help="instruction for SFT checkpoints (base ones ignore it)")
    p.add_argument("--num_samples", type=int, default=5)
    p.add_argument("--temperature", type=float, default=1.0, help="story temperature (the annotation always uses 1.0)")
    p.add_argument("--top_k", type=int, default=None)
    p.add_argument("--top_p", type=float, default=None)
    p.add_argument("--no_repeat_ngram", type=int, default=None,
                   help="ban any token that would repeat an N-token run of the story (default: no ban)")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--max_new_tokens", type=int, default=None, help="story token budget (default: fill the context)")
    p.add_argument("--anchor", default="auto", choices=["auto", "on", "off"],
                   help="sample the annotation first: auto = if the checkpoint was trained with one; off = the ablation")
    p.add_argument("--ann_by_field", action="store_true",
                   help="force the annotation's keys and separators; the model samples only the values")
    p.add_argument("--annotation", default=None, help='pin fields, e.g. "name: Mia | setting: desert"; the model samples the rest')
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--compile_sampling", **COMPILE_FLAG)
    add_device_flags(p, "for generation")
    args = p.parse_args(argv)
    for name, least in (("num_samples", 1), ("top_k", 1), ("max_new_tokens", 1), ("batch_size", 1),
                        ("no_repeat_ngram", 2)):
        if getattr(args, name) is not None and getattr(args, name) < least:
            p.error(f"--{name} {getattr(args, name)}: need at least {least}")
    if not args.temperature > 0:
        p.error(f"--temperature {args.temperature}: must be > 0")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        p.error(f"--top_p {args.top_p}: must be in (0, 1]")
    device = check_device(args.device)
    try:
        if not os.path.exists(os.path.join(args.ckpt, "ckpt.pt")):
            raise FileNotFoundError(f"no checkpoint at {os.path.join(args.ckpt, 'ckpt.pt')}; train one with pretrain.py / sft.py")
        pinned = None
        if args.annotation is not None:
            try:
                pinned = parse_annotation(args.annotation)
            except ValueError as e:
                raise ValueError(f"--annotation {args.annotation!r}: {e}") from None
            if not pinned:
                raise ValueError(f"--annotation {args.annotation!r} pins no field; write e.g. \"name: Mia | setting: desert\"")
        model, ckpt, enc = load_model(args.ckpt, device=device)
        format = ckpt["format"]
        use_ann = resolve_anchor(format, args.anchor)
        if format in BASE_FORMATS:
            print(f"note: {args.ckpt} is a base checkpoint (format {format}): prompted in its own document format, --prompt ignored")
        samples = sample_stories(model, enc, format, args.prompt, args.num_samples, temperature=args.temperature,
                                 top_k=args.top_k, top_p=args.top_p, no_repeat_ngram=args.no_repeat_ngram,
                                 seed=args.seed, max_new_tokens=args.max_new_tokens,
                                 anchor=use_ann, pinned=pinned, batch_size=args.batch_size,
                                 ann_by_field=args.ann_by_field, dtype=pick_dtype(device, args.dtype),
                                 compile=args.compile_sampling, quality_tag=ckpt.get("quality_tag", 0))
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"sample.py: error: {e}")
    for i, s in enumerate(samples):
        print(f"---------- sample {i + 1}/{len(samples)}" + ("" if s["finished"] else " (cut at the token budget)"))
        if s["annotation"] is not None:
            print(f"[annotation] {s['annotation']}")
        print(s["text"])

if __name__ == "__main__":
    main()
