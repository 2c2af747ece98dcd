"""
Sample stories from a checkpoint.

    python sample.py --ckpt out/anchored --prompt "Write a story." --num_samples 5
    python sample.py --ckpt out/anchored --annotation "name: Mia | setting: desert"   # pin some fields
    python sample.py --ckpt out/anchored --anchor off                                 # the paper's ablation

Anchored checkpoints (fmt anchored / anchored_unmasked, and the annotated base) first sample an
annotation after <|ann|> at temperature 1 (as in the paper, so the annotation keeps the model's
prior diversity), then the story after <|story|> at --temperature. Base checkpoints see no prompt:
they are prompted in their own document format (<|bos|><|story|> or <|bos|><|ann|>).
"""
import argparse
import os
import sys

import torch

import data

ANNOTATED_FMTS = ("annotated", *data.ANCHORED_FORMATS)  # formats with an <|ann|> segment
BASE_FMTS = ("plain", "annotated")
ANN_TEMPERATURE = 1.0   # the annotation is sampled at temperature 1, whatever --temperature says
ANN_MAX_TOKENS = 96     # a full annotation is ~40 tokens; a model that never closes it is cut here
FIELD_MAX_TOKENS = 12   # tokens for one free field's value when building a pinned annotation

# -----------------------------------------------------------------------------
# helpers

def special(enc, name: str) -> int:
    return enc.encode_single_token(name)

def special_ids(enc) -> set:
    """Every special token's id. Each one stops a story: a story has no special token inside it, so
    whatever the model writes after one (a new <|ann|> segment, a <|user|> turn) is not the story."""
    return {special(enc, t) for t in enc.special_tokens_set}

def cut_at_special(text: str) -> str:
    """Text up to the first special token's text ('<|...|>'): the part the judge may read.
    (Sampling already stops there; this guards text from elsewhere, e.g. an old samples file.)"""
    cut = min((i for i in (text.find(t) for t in data.SPECIAL_TOKENS) if i >= 0), default=len(text))
    return text[:cut]

def model_device(model) -> torch.device:
    return next(model.parameters()).device

def make_generator(model, seed: int) -> torch.Generator:
    """A seeded generator on the model's device: sampling draws its random numbers where the logits
    live, and PyTorch rejects a CPU generator for a CUDA or MPS tensor."""
    return torch.Generator(device=model_device(model)).manual_seed(seed)

def resolve_anchor(fmt: str, mode: str) -> bool:
    """--anchor auto|on|off -> whether to sample an annotation before the story."""
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"--anchor {mode!r}: valid are auto, on, off")
    if mode == "on" and fmt not in ANNOTATED_FMTS:
        raise ValueError(f"--anchor on: this checkpoint (fmt {fmt}) was trained without annotations; use --anchor auto or off")
    return mode != "off" and fmt in ANNOTATED_FMTS

_SEP_IDS = {}
def separator_ids(enc) -> set:
    """Every token whose text contains '|', the field separator: a sampled field value ends there.
    (With data's tokenizer ' |' is one token; this also works if some merge swallowed it.)"""
    key = (enc.name, enc.n_vocab)
    if key not in _SEP_IDS:
        specials = set(enc.special_tokens_set)
        _SEP_IDS[key] = {i for i in range(enc.n_vocab)
                         if _token_text(enc, i) is not None and "|" in _token_text(enc, i)
                         and _token_text(enc, i) not in specials}
    return _SEP_IDS[key]

def _token_text(enc, i):
    try:
        return enc.decode_single_token_bytes(i).decode("utf-8", errors="replace")
    except KeyError:  # a hole in the vocabulary
        return None

def annotation_segments(enc, pinned: dict):
    """The annotation split at field boundaries, in FIELDS order, as token-id pieces:
    [(field, forced ids, free?)], plus the separator ids. A pinned field is forced as
    'key: value'; a free field forces only 'key:' and the model samples ' value'.
    Pieces are encoded separately; annotation_ids() checks this equals data's tokenization."""
    out = []
    for i, f in enumerate(data.FIELDS):
        lead = "" if i == 0 else " "
        if f in pinned:
            out.append((f, enc.encode_ordinary(f"{lead}{f}: {pinned[f]}"), False))
        else:
            out.append((f, enc.encode_ordinary(f"{lead}{f}:"), True))
    return out

def annotation_ids(enc, ann: dict) -> list:
    """A full annotation's ids built piece by piece the way sampling builds them (for tests: must
    equal the ids between <|ann|> and <|story|> in data.encode_example)."""
    sep = enc.encode_ordinary(" |")
    ids = []
    for i, (f, forced, _) in enumerate(annotation_segments(enc, ann)):
        ids += forced + (sep if i < len(data.FIELDS) - 1 else [])
    return ids

# -----------------------------------------------------------------------------
# sampling

def _generate(model, prompts, max_new, stop_ids, generator, temperature=1.0, top_k=None, top_p=None, pad_id=0):
    room = model.config.block_size - max(len(p) for p in prompts)
    if room <= 0:  # the context is full (a long annotation on a short-context model): nothing more
        return [[] for _ in prompts]
    return model.generate(prompts, min(max_new, room), temperature=temperature, top_k=top_k, top_p=top_p,
                          stop_ids=tuple(stop_ids), generator=generator, pad_id=pad_id)

def _strip_stop(ids, stops):
    return ids[:-1] if ids and ids[-1] in stops else ids

def sample_annotations(model, enc, prefixes, pinned, generator, by_field=False) -> list:
    """Annotation ids (without the closing <|story|>) for each prefix ending in <|ann|>.
    No pins (and not by_field): the model writes the whole annotation and stops at <|story|>.
    Pins or by_field: built field by field in FIELDS order, batched over rows: pinned fields forced,
    free fields sampled by the model after a forced 'key:' (so the layout is always well formed)."""
    pad, specials = special(enc, "<|pad|>"), special_ids(enc)
    if not pinned and not by_field:
        # the annotation ends at <|story|>, or at any other special token (then it is cut there)
        outs = _generate(model, prefixes, ANN_MAX_TOKENS, specials, generator, ANN_TEMPERATURE, pad_id=pad)
        return [_strip_stop(o, specials) for o in outs]
    sep = enc.encode_ordinary(" |")
    stops = separator_ids(enc) | specials
    anns = [[] for _ in prefixes]
    segs = annotation_segments(enc, pinned)
    for i, (f, forced, free) in enumerate(segs):
        for a in anns:
            a += forced
        if free:
            outs = _generate(model, [p + a for p, a in zip(prefixes, anns)], FIELD_MAX_TOKENS, stops, generator,
                             ANN_TEMPERATURE, pad_id=pad)
            for a, o in zip(anns, outs):
                a += _strip_stop(o, stops)
        if i < len(segs) - 1:
            for a in anns:
                a += sep  # the canonical separator, whatever token ended the value
    return anns

def inference_prefix(enc, fmt, prompt, use_ann, block) -> list:
    """The ids generation starts from, built by data.py's one format function. A base format sees
    no prompt (its own document start); an SFT format needs one."""
    if fmt not in data.FORMATS:
        raise ValueError(f"unknown checkpoint format {fmt!r}; valid: {data.FORMATS}")
    if fmt in BASE_FMTS:
        prefix = data.prompt_ids(enc, fmt) if use_ann or fmt == "plain" else data.prompt_ids(enc, "plain")
    else:
        if not prompt or not prompt.strip():
            raise ValueError("empty prompt: an SFT checkpoint needs an instruction, e.g. --prompt 'Write a story.'")
        prefix = data.prompt_ids(enc, fmt, prompt, anchor=use_ann)
    if len(prefix) >= block:
        raise ValueError(f"prompt is {len(prefix)} tokens, too long for the context of {block} tokens; shorten it")
    return prefix

@torch.inference_mode()
def sample_many(model, enc, fmt, prompts, n, *, temperature=1.0, top_k=None, top_p=None, seed=0,
                max_new_tokens=None, anchor=True, pinned=None, batch_size=64, ann_by_field=False) -> list:
    """n samples for each of several prompts, [[sample of prompt 0, ...], ...], drawn in shared
    batches of batch_size rows (prompt 0's n rows, then prompt 1's, ...): one generate call can hold
    several prompts, which a GPU runs about as fast as one. See sample_stories for the rest."""
    use_ann = anchor and fmt in ANNOTATED_FMTS
    pinned = dict(pinned or {})
    if pinned and not use_ann:
        why = "it is sampled with --anchor off" if fmt in ANNOTATED_FMTS else f"its format {fmt!r} has no annotation"
        raise ValueError(f"cannot pin annotation fields on this checkpoint: {why} "
                         f"(pinning needs fmt {' / '.join(ANNOTATED_FMTS)} with the annotation on)")
    for f, v in pinned.items():
        if f not in data.FIELDS or v not in data.FIELDS[f]:
            raise ValueError(f"pinned {f}={v!r} is not a field value; fields: {', '.join(data.FIELDS)}")
    block = model.config.block_size
    jobs = [(j, inference_prefix(enc, fmt, p, use_ann, block)) for j, p in enumerate(prompts) for _ in range(n)]
    story, pad, stops = special(enc, "<|story|>"), special(enc, "<|pad|>"), special_ids(enc)
    max_new = max_new_tokens if max_new_tokens is not None else block
    gen = make_generator(model, seed)
    out = [[] for _ in prompts]
    for start in range(0, len(jobs), batch_size):
        batch = jobs[start:start + batch_size]
        prefixes = [list(prefix) for _, prefix in batch]
        anns = [None] * len(batch)
        if use_ann:
            anns = sample_annotations(model, enc, prefixes, pinned, gen, by_field=ann_by_field)
            prefixes = [p + a + [story] for p, a in zip(prefixes, anns)]
        # every special token ends the story (not only <|eos|>): the judge reads the story alone
        outs = _generate(model, prefixes, max_new, stops, gen, temperature, top_k, top_p, pad_id=pad)
        for (j, _), a, o in zip(batch, anns, outs):
            out[j].append({"annotation": None if a is None else enc.decode(a).strip(),
                           "text": enc.decode(_strip_stop(o, stops)).strip(),
                           "finished": bool(o) and o[-1] in stops,
                           # which special token ended it: <|eos|> is the clean end; any other cut it short
                           "stop": enc.decode([o[-1]]) if o and o[-1] in stops else None})
    return out

def sample_stories(model, enc, fmt, prompt, n, **kw) -> list:
    """n samples as [{"annotation": str|None, "text": str, "finished": bool, "stop": str|None}].
    fmt: the checkpoint's format. prompt: the instruction (ignored by base formats). anchor=False
    skips the annotation (the ablation). pinned: {field: value} forced into the annotation.
    max_new_tokens: response budget (None = fill the context). ann_by_field: force the annotation's
    keys and separators and let the model sample only the values (as with pins). Same seed => same
    samples. Keywords as sample_many."""
    return sample_many(model, enc, fmt, [prompt], n, **kw)[0]

# -----------------------------------------------------------------------------

DEVICES = ("auto", "cpu", "cuda", "mps")

def pick_device(name: str) -> str:
    """--device auto -> cuda > mps > cpu; an explicit device must exist here."""
    if name.split(":")[0] not in DEVICES:
        raise ValueError(f"--device {name!r}: valid are {', '.join(DEVICES)} (or cuda:N)")
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: no CUDA device here; use --device auto or cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("--device mps: MPS is not available here; use --device auto or cpu")
    return name

def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True, help="checkpoint directory (holding ckpt.pt)")
    p.add_argument("--prompt", default="Write a story.", help="instruction for SFT checkpoints (base ones ignore it)")
    p.add_argument("--num_samples", type=int, default=5)
    p.add_argument("--temperature", type=float, default=1.0, help="story temperature (the annotation always uses 1.0)")
    p.add_argument("--top_k", type=int, default=None)
    p.add_argument("--top_p", type=float, default=None)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--max_new_tokens", type=int, default=None, help="story token budget (default: fill the context)")
    p.add_argument("--anchor", default="auto", choices=["auto", "on", "off"],
                   help="sample the annotation first: auto = if the checkpoint was trained with one; off = the ablation")
    p.add_argument("--ann_by_field", action="store_true",
                   help="force the annotation's keys and separators; the model samples only the values")
    p.add_argument("--annotation", default=None, help='pin fields, e.g. "name: Mia | setting: desert"; the model samples the rest')
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps")
    args = p.parse_args()
    if args.num_samples < 1:
        p.error(f"--num_samples {args.num_samples}: need at least 1")
    try:
        if not os.path.exists(os.path.join(args.ckpt, "ckpt.pt")):
            raise FileNotFoundError(f"no checkpoint at {os.path.join(args.ckpt, 'ckpt.pt')}; train one with pretrain.py / sft.py")
        pinned = None
        if args.annotation is not None:
            try:
                pinned = data.parse_annotation(args.annotation)
            except ValueError as e:
                raise ValueError(f"--annotation {args.annotation!r}: {e}") from None
            if not pinned:
                raise ValueError(f"--annotation {args.annotation!r} pins no field; write e.g. \"name: Mia | setting: desert\"")
        from pretrain import load_model
        model, ckpt, enc = load_model(args.ckpt, device=pick_device(args.device))
        fmt = ckpt["fmt"]
        use_ann = resolve_anchor(fmt, args.anchor)
        if fmt in BASE_FMTS:
            print(f"note: {args.ckpt} is a base checkpoint (fmt {fmt}): prompted in its own document format, --prompt ignored")
        samples = sample_stories(model, enc, fmt, args.prompt, args.num_samples, temperature=args.temperature,
                                 top_k=args.top_k, top_p=args.top_p, seed=args.seed, max_new_tokens=args.max_new_tokens,
                                 anchor=use_ann, pinned=pinned, batch_size=args.batch_size,
                                 ann_by_field=args.ann_by_field)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"sample.py: error: {e}")
    for i, s in enumerate(samples):
        print(f"---------- sample {i + 1}/{len(samples)}" + ("" if s["finished"] else " (cut at the token budget)"))
        if s["annotation"] is not None:
            print(f"[annotation] {s['annotation']}")
        print(s["text"])

if __name__ == "__main__":
    main()
