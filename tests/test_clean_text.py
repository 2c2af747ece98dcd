"""Clean text: dead tokens are never predicted, SFT brings its own targets to life, and the
evaluation counts broken text, annotations that do not parse, and diversity over good stories."""

import json

import numpy as np
import torch

import engine
import eval_diversity
import metrics
import sft
import world
from checkpoint import load_model
from model import GPT, GPTConfig
from tokenizer import dead_tokens, load_tokenizer


def test_dead_tokens_are_the_unused_ids():
    assert dead_tokens(6, np.array([0, 2, 2]), np.array([[5]])) == (1, 3, 4)
    assert dead_tokens(3) == (0, 1, 2)


def test_dead_tokens_get_no_probability_and_no_gradient():
    torch.manual_seed(0)
    cfg = dict(vocab_size=16, block_size=8, n_layer=1, n_head=2, n_embd=8)
    model = GPT(GPTConfig(**cfg, dead_tokens=(3, 7)))
    live = torch.tensor([i for i in range(16) if i not in (3, 7)])
    x = live[torch.randint(0, len(live), (2, 8))]
    y = x.roll(-1, dims=1)
    logits, loss = model(x, y)
    assert torch.isinf(logits[..., [3, 7]]).all() and torch.isfinite(logits[..., 0]).all()
    loss.backward()
    grad = model.wte.weight.grad
    assert grad[[3, 7]].abs().sum() == 0 and grad[0].abs().sum() > 0  # 3, 7 never inputs, never targets
    out = engine.generate(model, [[1, 2]] * 8, 6, temperature=5.0, generator=torch.Generator().manual_seed(1))
    ref = model.generate(torch.tensor([[1, 2]] * 8), 6, temperature=5.0, generator=torch.Generator().manual_seed(1))
    assert not {t for o in out for t in o} & {3, 7} and not set(ref[:, 2:].flatten().tolist()) & {3, 7}
    # no dead tokens: the same model as before the mask existed
    plain = GPT(GPTConfig(**cfg))
    plain.load_state_dict(model.state_dict())
    assert torch.isfinite(plain(x, y)[0]).all()


def test_base_masks_what_its_shards_never_hold(tiny_base_dirs, tiny_data_dir):
    model, _, _ = load_model(tiny_base_dirs["annotated"])
    shard = np.fromfile(tiny_data_dir / "pretrain_annotated_train.bin", dtype=np.uint16)
    dead = model.config.dead_tokens
    assert dead and not set(dead) & set(np.unique(shard).tolist())
    assert 200 in dead  # a raw byte above 127: an ASCII corpus never holds it


def sft_row_tokens(data_dir):
    """(inputs, targets): the token ids the tiny anchored SFT run's rows hold, train and val."""
    enc, inputs, targets = load_tokenizer(data_dir), set(), set()
    for split in ("train", "val"):
        examples = [json.loads(ln) for ln in (data_dir / f"sft_{split}.jsonl").read_text().splitlines()]
        x, y = sft.pack_examples(enc, examples, "anchored", 512)
        inputs |= set(np.unique(x.numpy()).tolist())
        targets |= set(np.unique(y[y >= 0].numpy()).tolist())
    return inputs, targets


def test_sft_revives_its_targets_with_fresh_embeddings(tiny_base_dirs, tiny_sft_dirs, tiny_data_dir):
    base, _, _ = load_model(tiny_base_dirs["annotated"])
    tuned, _, _ = load_model(tiny_sft_dirs["anchored"])
    _, targets = sft_row_tokens(tiny_data_dir)
    revived = set(base.config.dead_tokens) - set(tuned.config.dead_tokens)
    assert revived and revived <= targets  # title words of the house format, at least
    assert not set(tuned.config.dead_tokens) & targets
    assert set(tuned.config.dead_tokens) <= set(base.config.dead_tokens)
    # a revived row starts afresh: it is no longer the base's row
    r = sorted(revived)[0]
    assert not torch.equal(base.wte.weight[r], tuned.wte.weight[r])
    assert sft.start_embeddings(tuned, [], []) == (0, 0)


def test_sft_zeroes_the_embeddings_of_tokens_no_row_holds(tiny_base_dirs, tiny_sft_dirs, tiny_data_dir):
    """A token neither pretraining nor SFT ever shows the model reads as a zero vector after SFT (and
    stays one through training); a token the SFT prompts hold as input only keeps a trained row."""
    base, _, _ = load_model(tiny_base_dirs["annotated"])
    tuned, _, _ = load_model(tiny_sft_dirs["anchored"])
    held = set.union(*sft_row_tokens(tiny_data_dir))
    unseen = sorted(set(base.config.dead_tokens) - held)
    input_only = sorted(set(tuned.config.dead_tokens) & held)
    assert 200 in unseen and input_only  # a raw byte; <|user|> is read, never predicted
    assert base.wte.weight[unseen].abs().sum() > 0  # the base's rows: its init, decayed
    assert tuned.wte.weight[unseen].abs().sum() == 0
    assert (tuned.wte.weight[input_only].abs().sum(dim=1) > 0).all()


def test_broken_text_and_annotation_parse():
    assert eval_diversity.is_broken("a \ufffd b") and eval_diversity.is_broken("The end.<|eos|>")
    assert not eval_diversity.is_broken("A clean story.") and not eval_diversity.is_broken(None)
    good = world.format_annotation({f: v[0] for f, v in world.FIELDS.items()})
    assert metrics.annotation_parses(good)
    assert not metrics.annotation_parses(good, closed=False)          # never reached <|story|>
    parts = good.split(" | ")
    assert not metrics.annotation_parses(" | ".join(parts[1:] + parts[:1]))  # keys out of order
    assert not metrics.annotation_parses(good.replace(parts[0].split(": ")[1], "spaceship"))  # not in schema
    assert not metrics.annotation_parses(" | ".join(parts[:-1]))     # a field missing
    samples = [{"annotation": good, "annotation_closed": True}, {"annotation": good, "annotation_closed": False}]
    assert metrics.annotation_valid(samples) == 0.5


def test_d_good_counts_only_well_formed_stories():
    def s(q, name):
        labels = {f: None for f in world.FIELDS}
        labels["name"] = name
        return {"labels": labels, "quality": q, "house": False, "words": 100, "broken": not q}
    samples = [s(True, "Mia"), s(True, "Leo"), s(False, "Ava"), s(False, "Max")]
    m = metrics.prompt_metrics(samples, {})
    assert m["n_good"] == 2 and m["broken_text"] == 0.5
    # name: 1 bit over the two good stories; every other free field is None twice: 0 bits
    assert np.isclose(m["D_good"], 1.0 / len(m["free_fields"]))
    assert metrics.prompt_metrics(samples[2:], {})["D_good"] is None
