"""Tests of pretrain.py and sft.py on CPU: config and presets, exact resume, which tokens carry
the SFT loss, DDP = one process, atomic checkpoints, clear errors, and the CLI end to end."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import data
import tokenizer
import world
import model
import checkpoint
import pretrain
import sft
from loop import build_parser, make_config, token_budget
from pretrain import PRESETS, TrainConfig
from sft import SFTConfig

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
SMALL = ["--n_layer", "1", "--n_head", "2", "--n_embd", "32", "--block_size", "128", "--device", "cpu",
         "--eval_iters", "2", "--log_interval", "1"]


def log_of(out_dir):
    return [json.loads(ln) for ln in (Path(out_dir) / "log.jsonl").read_text().splitlines()]


def run_script(*args):
    """python *args in the repo root; on failure show what the script said."""
    r = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr[-3000:]}"
    return r


def error_of(argv, main=pretrain.main):
    """Run main(argv), which must stop with a SystemExit; return its message (or exit code)."""
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    return e.value.code

# -----------------------------------------------------------------------------
# Configuration


def test_help_lists_every_field_and_typos_are_errors(capsys):
    for cls, presets in ((TrainConfig, PRESETS), (SFTConfig, {})):
        text = build_parser(cls, presets, "").format_help()
        for f in cls.__dataclass_fields__.values():
            assert f"--{f.name}" in text and f"(default: {f.default!r})" in " ".join(text.split())
    parser = build_parser(TrainConfig, PRESETS, "")
    assert vars(parser.parse_args(["--no-annotations", "--compile"])) == {"annotations": False, "compile": "on"}
    assert vars(parser.parse_args(["--compile", "off"])) == {"compile": "off"}
    for bad in (["--max_it", "3"], ["--lr", "fast"], ["--preset", "huge"]):  # abbreviation, type, choice
        with pytest.raises(SystemExit):
            parser.parse_args(bad)


def test_precedence_defaults_preset_flags():
    assert make_config(TrainConfig, PRESETS, {"preset": "tiny"}) == TrainConfig()  # tiny = the defaults
    for missing in ({}, {"preset": "huge"}):  # a missing or unknown preset is an error, never tiny
        with pytest.raises(ValueError, match="is not one of"):
            make_config(TrainConfig, PRESETS, missing)
    cfg = make_config(TrainConfig, PRESETS, {"preset": "cpu-s", "lr": 0.1})
    assert (cfg.n_layer, cfg.lr, cfg.weight_decay) == (PRESETS["cpu-s"]["n_layer"], 0.1, TrainConfig.weight_decay)
    saved = {**vars(cfg), "n_layer": 7}  # --resume: the run's config, then the flags typed now
    assert make_config(TrainConfig, PRESETS, {"max_iters": 9}, saved=saved).n_layer == 7


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_are_valid_and_gpu_budgets_reach_20_tokens_per_param(name):
    cfg = make_config(TrainConfig, PRESETS, {"preset": name})
    pretrain.check_train_config(cfg)
    if name.startswith("gpu"):
        gpt = model.GPT(model.GPTConfig(vocab_size=data.DEFAULTS["vocab_size"],
                                        **{k: getattr(cfg, k) for k in pretrain.MODEL_FIELDS}))
        assert cfg.block_size == 512 and token_budget(cfg, cfg.block_size) >= 20 * gpt.num_params(non_embedding=False)

def test_sft_defaults_come_from_the_base_and_it_trains_one_epoch():
    """No table of SFT presets: the base's own config gives the rows per step and the LR (the one it
    ended at); the steps are --epochs passes over the packed rows; typed flags win; --preset is no SFT flag."""
    base = dict(max_iters=1000, batch_size=8, grad_accum=2, block_size=512, lr=3e-3, min_lr_frac=0.1)
    cfg = make_config(SFTConfig, {}, sft.sft_defaults(base))
    assert (cfg.batch_size, cfg.grad_accum, cfg.lr) == (8, 2, pytest.approx(3e-4))
    assert sft.sft_steps(cfg, n_rows=1000) == 63  # ceil(1000 rows / 16 a step): one epoch
    cfg = make_config(SFTConfig, {}, {**sft.sft_defaults(base), "epochs": 0.5, "lr": 1e-3})
    assert (sft.sft_steps(cfg, 1000), cfg.lr) == (32, 1e-3)
    cfg = make_config(SFTConfig, {}, {**sft.sft_defaults(base), "max_iters": 7})
    assert sft.sft_steps(cfg, 1000) == 7
    assert sft.sft_steps(cfg, 1000, world_size=4) == 7
    assert sft.sft_steps(make_config(SFTConfig, {}, sft.sft_defaults(base)), 1000, world_size=4) == 16
    with pytest.raises(SystemExit):
        build_parser(SFTConfig, {}, "").parse_args(["--preset", "cpu-m"])


# -----------------------------------------------------------------------------
# Exact resume


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_resume_is_exact(tiny_data_dir, tmp_path, one_thread, dtype):
    # warmup longer than the run: the schedule depends on the step only, not on max_iters;
    # dropout on: the RNG state must be restored too; bit-exact for each dtype
    common = ["--data_dir", tiny_data_dir, *SMALL, "--warmup_iters", "100", "--dropout", "0.1",
              "--batch_size", "2", "--eval_interval", "2", "--dtype", dtype]
    pretrain.main([str(a) for a in [*common, "--out_dir", tmp_path / "a", "--max_iters", "6"]])
    pretrain.main([str(a) for a in [*common, "--out_dir", tmp_path / "b", "--max_iters", "3"]])
    pretrain.main([str(a) for a in ["--out_dir", tmp_path / "b", "--resume", "--max_iters", "6"]])
    a, b = (checkpoint.load_checkpoint(tmp_path / d) for d in "ab")
    assert a["step"] == b["step"] == 6 and a["data_pos"] == b["data_pos"] == 12
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert [r["loss"] for r in log_of(tmp_path / "a") if "loss" in r] == \
        [r["loss"] for r in log_of(tmp_path / "b") if "loss" in r]  # no step logged twice
    for r in (r for r in log_of(tmp_path / "a") if "loss" in r):  # row slots read vs tokens trained
        assert r["slots"] == r["step"] * 2 * 128 and 0 < r["targets"] <= 2 * 128


@pytest.mark.skipif(__import__("device").cpu_compiler() is None, reason="torch.compile's CPU backend needs a C++ compiler")
def test_compiled_and_eager_runs_resume_each_other(tiny_data_dir, tmp_path, one_thread):
    """4 steps compiled then 2 eager, and 4 eager then 2 compiled, end where 6 eager steps end
    (fp32: inductor reorders sums, so equal to rounding, not bit for bit); the checkpoints hold
    the plain model's keys. Slow-ish: two compiles of a 1-layer model (~30 s on one thread)."""
    common = ["--data_dir", tiny_data_dir, *SMALL, "--batch_size", "2", "--eval_interval", "2",
              "--dtype", "float32", "--warmup_iters", "100"]  # the schedule: a function of the step alone
    pretrain.main([str(a) for a in [*common, "--out_dir", tmp_path / "eager", "--max_iters", "6", "--compile", "off"]])
    for name, first, then in (("ce", "on", "off"), ("ec", "off", "on")):
        pretrain.main([str(a) for a in [*common, "--out_dir", tmp_path / name, "--max_iters", "4", "--compile", first]])
        pretrain.main([str(a) for a in ["--out_dir", tmp_path / name, "--resume", "--max_iters", "6", "--compile", then]])
    ref = checkpoint.load_checkpoint(tmp_path / "eager")
    for name in ("ce", "ec"):
        ckpt = checkpoint.load_checkpoint(tmp_path / name)
        assert ckpt["step"] == 6 and ckpt["model"].keys() == ref["model"].keys(), name
        for k in ref["model"]:
            torch.testing.assert_close(ckpt["model"][k], ref["model"][k], atol=1e-4, rtol=1e-3, msg=f"{name} {k}")
        losses = [r["loss"] for r in log_of(tmp_path / name) if "loss" in r]
        assert losses == pytest.approx([r["loss"] for r in log_of(tmp_path / "eager") if "loss" in r], rel=1e-4)


def test_compile_is_automatic_past_the_break_even(monkeypatch):
    """The rule in one place: short runs stay eager, long ones compile, and the line says why."""
    monkeypatch.setenv("CXX", sys.executable)  # a compiler as far as the rule can tell, on any machine
    from device import COMPILE_BREAK_EVEN_ROWS, compile_pays
    rows = COMPILE_BREAK_EVEN_ROWS["cpu"]
    assert compile_pays("cpu", rows // 4 - 1, 4)[0] is False
    assert compile_pays("cpu", rows // 4, 4) == (True, f"compiling: pays for itself after ~{rows // 4:,} steps "
                                                         f"(this run: {rows // 4:,}; --compile off to skip)")
    assert compile_pays("cpu", 3600, 4)[0]  # the CPU ladder's bases compile
    assert compile_pays("cuda", 10 ** 5, 64)[0] and not compile_pays("cuda", 1_000, 64)[0]
    assert compile_pays("cpu", 10, 4, "on")[0] and not compile_pays("cpu", 10 ** 9, 4, "off")[0]
    assert compile_pays("mps", 10 ** 9, 64)[0] is False  # not measured there: eager
    tiny = PRESETS["tiny"]
    assert not compile_pays("cpu", tiny["max_iters"], tiny["batch_size"])[0]  # the tutorial's first run


def test_no_cpu_compiler_means_eager(monkeypatch):
    """Without a C++ compiler torch.compile cannot run on a CPU: auto stays eager and says so, on is
    a one-line error; CUDA is not affected."""
    from device import compile_pays, cpu_compiler
    monkeypatch.setenv("CXX", sys.executable)  # any program on the PATH stands in for one
    assert cpu_compiler() == sys.executable
    monkeypatch.setenv("CXX", "no-such-compiler-here")
    assert cpu_compiler() is None
    compiling, why = compile_pays("cpu", 10 ** 6, 4)
    assert compiling is False and "no C++ compiler" in why
    with pytest.raises(SystemExit, match="--compile on: no C.. compiler"):
        compile_pays("cpu", 10, 4, "on")
    assert compile_pays("cuda", 10 ** 5, 64)[0]


def test_sft_resume_is_exact(tiny_base_dirs, tmp_path, one_thread):
    common = ["--init_from", tiny_base_dirs["annotated"], "--device", "cpu", "--batch_size", "2",
              "--eval_iters", "1", "--eval_interval", "2", "--warmup_iters", "100"]
    sft.main([str(a) for a in [*common, "--out_dir", tmp_path / "a", "--max_iters", "4"]])
    sft.main([str(a) for a in [*common, "--out_dir", tmp_path / "b", "--max_iters", "2"]])
    sft.main([str(a) for a in ["--out_dir", tmp_path / "b", "--resume", "--max_iters", "4"]])
    a, b = (checkpoint.load_checkpoint(tmp_path / d) for d in "ab")
    assert a["step"] == b["step"] == 4 and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_ctrl_c_saves_and_resume_finishes(tiny_data_dir, tmp_path, monkeypatch, one_thread):
    forward, calls = model.GPT.forward, []

    def interrupted_forward(self, idx, targets=None):
        if self.training:
            calls.append(1)
            if len(calls) == 3:  # Ctrl-C during the third step
                os.kill(os.getpid(), signal.SIGINT)
        return forward(self, idx, targets)
    monkeypatch.setattr(model.GPT, "forward", interrupted_forward)
    argv = ["--data_dir", tiny_data_dir, *SMALL, "--batch_size", "2", "--out_dir", tmp_path, "--max_iters", "8"]
    pretrain.main([str(a) for a in argv])
    assert checkpoint.load_checkpoint(tmp_path)["step"] == 3  # the step in flight finished, then saved
    pretrain.main([str(a) for a in ["--out_dir", tmp_path, "--resume"]])
    assert checkpoint.load_checkpoint(tmp_path)["step"] == 8


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_data_dir, tmp_path, monkeypatch, one_thread):
    forward, calls = model.GPT.forward, []

    def nan_forward(self, idx, targets=None):
        logits, loss = forward(self, idx, targets)
        if self.training:
            calls.append(1)
            if len(calls) >= 5:
                loss = loss * float("nan")
        return logits, loss
    monkeypatch.setattr(model.GPT, "forward", nan_forward)
    argv = ["--data_dir", tiny_data_dir, *SMALL, "--batch_size", "2", "--out_dir", tmp_path,
            "--max_iters", "8", "--eval_interval", "2"]
    msg = error_of(argv)
    assert "loss is nan" in msg and "step 4" in msg and "last good checkpoint" in msg
    assert checkpoint.load_checkpoint(tmp_path)["step"] == 4


def test_compiled_run_saves_the_raw_weights(tiny_data_dir, tmp_path, monkeypatch, one_thread):
    """--compile trains through the compiled wrapper (whose state dict keys start "_orig_mod.")
    but checkpoints hold the raw GPT's: the keys are plain, they are the trained weights, and
    load_model loads them. The aot_eager backend traces like inductor without C++ code generation."""
    monkeypatch.setenv("CXX", sys.executable)  # aot_eager needs no compiler; the rule must not refuse
    import loop
    real_compile, compiled = torch.compile, []

    def compile_aot_eager(m):
        compiled.append(m)
        return real_compile(m, backend="aot_eager")
    monkeypatch.setattr(loop.torch, "compile", compile_aot_eager)
    argv = ["--data_dir", tiny_data_dir, *SMALL, "--batch_size", "2", "--out_dir", tmp_path,
            "--max_iters", "2", "--compile"]
    pretrain.main([str(a) for a in argv])
    saved = checkpoint.load_checkpoint(tmp_path)["model"]
    assert len(compiled) == 1 and not any(k.startswith("_orig_mod.") for k in saved)
    for k, v in compiled[0].state_dict().items():  # the module that was trained, as trained
        assert torch.equal(saved[k], v), k
    loaded, _, _ = checkpoint.load_model(tmp_path)
    assert torch.equal(loaded.wte.weight, compiled[0].wte.weight)

# -----------------------------------------------------------------------------
# Which tokens carry the SFT loss


def test_sft_targets_are_exactly_what_the_mode_says(tiny_data_dir):
    enc = tokenizer.load_tokenizer(tiny_data_dir)
    sp, text = enc.encode_single_token, enc.encode_ordinary
    ann = {f: values[0] for f, values in world.FIELDS.items()}
    ex = {"prompt": "Write a story.", "annotation": ann, "kind": "open", "constraints": {},
          "response": "Title: The Test\n\nMia went to the sea. She was happy.\n\nThe End."}
    # the layouts written out by hand: prompt, annotation segment, response
    prompt = [sp("<|bos|>"), sp("<|user|>")] + text(ex["prompt"]) + [sp("<|assistant|>")]
    anchor = [sp("<|ann|>")] + text(world.format_annotation(ann)) + [sp("<|story|>")]
    response = text(ex["response"]) + [sp("<|eos|>")]
    assert set(sft.SFT_FORMATS) >= {"standard", "anchored", "anchored_unmasked"}
    for format in sft.SFT_FORMATS:
        ids = prompt + (response if format == "standard" else anchor + response)
        x, y = sft.pack_examples(enc, [ex], format, block_size=len(ids) - 1)  # exactly one full row
        assert x.shape == (1, len(ids) - 1) and x[0].tolist() == ids[:-1], format
        # the targets are exactly the tokens tokenizer.encode_example's mask marks, nothing else
        _, mask = tokenizer.encode_example(enc, ex, format)
        assert y[0].tolist() == [t if m else -1 for t, m in zip(ids[1:], mask[1:])], format
        trained = [False] + [t != -1 for t in y[0].tolist()]  # trained[i]: is ids[i] a target
        n_p, n_a = len(prompt), (0 if format == "standard" else len(anchor))
        assert not any(trained[:n_p]), format                    # never the prompt
        assert all(trained[n_p + n_a:]), format                  # always the response and <|eos|>
        on_annotation = sum(trained[n_p:n_p + n_a])
        if format == "anchored_unmasked":                        # the ablation: the whole annotation
            assert on_annotation == n_a
        elif format == "anchored_strict":                        # the paper's mask, literally
            assert on_annotation == 0
        elif format == "anchored":                               # never the values it chooses freely
            assert on_annotation <= n_a - len(world.FIELDS), format
    # two examples in one row: the second starts with <|bos|>, nothing across the seam or in the
    # padding is trained
    ids, mask = tokenizer.encode_example(enc, ex, "anchored")
    x, y = sft.pack_examples(enc, [ex, ex], "anchored", block_size=2 * len(ids) + 10)
    assert x.shape[0] == 1 and x[0, len(ids)] == sp("<|bos|>")
    assert (y[0, len(ids) - 1:len(ids) + 1] == -1).all() and (y[0, 2 * len(ids) - 1:] == -1).all()
    assert int((y != -1).sum()) == 2 * sum(mask[1:])
    with pytest.raises(SystemExit, match="SFT example 1 .* more than block_size"):
        sft.pack_examples(enc, [{**ex, "response": "Hi."}, ex], "anchored", block_size=len(ids) - 2)


def test_the_pinned_value_rows_hold_the_values_the_prompt_pins_and_nothing_else(tiny_data_dir):
    enc = tokenizer.load_tokenizer(tiny_data_dir)
    ann = {f: values[1] for f, values in world.FIELDS.items()}
    base = {"prompt": "Write a story.", "annotation": ann, "response": "Title: A\n\nMia went to the sea.\n\nThe End."}
    pins = [{}, {"character": ann["character"]}, {"setting": ann["setting"], "theme": ann["theme"]}]
    examples = [{**base, "kind": "constrained" if p else "open", "constraints": p} for p in pins]
    for block_size in (100, 1000):  # one example a row (the open one's row dropped), and all in one row
        x, y = sft.pinned_value_rows(enc, examples, block_size)
        assert len(x) == (2 if block_size == 100 else 1)
        targets = [t for t in y.flatten().tolist() if t != -1]
        assert enc.decode(targets) == "".join(" " + ann[f] for f in ("character", "setting", "theme"))


def test_anchored_sft_validates_the_pinned_values_on_their_own(tiny_base_dirs, tmp_path, one_thread):
    for format in ("anchored", "standard"):
        base = tiny_base_dirs["annotated" if format == "anchored" else "plain"]
        sft.main(["--init_from", str(base), "--format", format, "--max_iters", "2", "--batch_size", "1",
                  "--eval_iters", "2", "--out_dir", str(tmp_path / format)])
        validated = [r for r in log_of(tmp_path / format) if "val_loss" in r]
        assert [r["step"] for r in validated] == [0, 1, 2]
        if format == "anchored":  # a base that never saw a prompt has not learnt to copy from it
            assert all(r["val_loss_pinned_values"] > 0 for r in validated)
            assert validated[0]["val_loss_pinned_values"] > validated[0]["val_loss"]
        else:
            assert not any("val_loss_pinned_values" in r for r in validated)


def test_replay_examples_train_the_whole_annotation_and_nothing_else(tiny_data_dir):
    enc = tokenizer.load_tokenizer(str(tiny_data_dir))
    ann_id, story_id = enc.encode_single_token("<|ann|>"), enc.encode_single_token("<|story|>")
    for ex in sft.make_replay_examples(20, seed=3):
        assert all(ex["annotation"][f] == v for f, v in ex["constraints"].items())  # pins kept
        ids, mask = tokenizer.encode_example(enc, ex, "anchored")
        trained = [t for t, m in zip(ids[1:], mask[1:]) if m]
        assert trained[0] == ann_id and trained[-1] == story_id  # <|ann|>{annotation}<|story|>, no eos
        assert world.parse_annotation(enc.decode(trained[1:-1])) == ex["annotation"]
        for format in tokenizer.ANCHORED_FORMATS:  # the whole annotation in every anchored format
            assert tokenizer.encode_example(enc, ex, format) == (ids, mask)
        with pytest.raises(ValueError, match="annotation replay"):
            tokenizer.encode_example(enc, ex, "standard")
    assert sft.make_replay_examples(5, seed=3) == sft.make_replay_examples(5, seed=3)  # deterministic


def test_pretrain_mix_replays_the_bases_own_documents_every_token_trained(tiny_data_dir):
    enc = tokenizer.load_tokenizer(str(tiny_data_dir))
    meta = data.read_meta(str(tiny_data_dir))
    shard = np.fromfile(tiny_data_dir / "pretrain_annotated_train.bin", dtype=np.uint16)
    docs = sft.make_pretrain_mix(3, meta, "annotated")
    ids = [t for ex in docs for t in tokenizer.encode_example(enc, ex, ex["format"])[0]]
    assert shard[:len(ids)].tolist() == ids  # the train split's first documents, token for token
    x, y = sft.pack_examples(enc, docs, "anchored", block_size=512)  # its own format, not the SFT one
    assert int((y != -1).sum()) == len(ids) - len(docs)  # every token but each <|bos|> is a target
    plain = sft.make_pretrain_mix(1, meta, "plain")[0]
    assert plain["annotation"] is None and plain["story"] == docs[0]["story"]
    with pytest.raises(SystemExit, match="pretraining documents"):
        sft.make_pretrain_mix(10**6, meta, "annotated")


def test_pretrain_mix_of_a_titled_build_replays_its_titles(tmp_path):
    out = str(tmp_path / "titled")
    meta = data.ensure_dataset(out, progress=False, n_stories=300, n_sft=20, n_sft_val=5, vocab_size=600, titled=0.5)
    enc = tokenizer.load_tokenizer(out)
    docs = sft.make_pretrain_mix(8, meta, "annotated")
    ids = [t for ex in docs for t in tokenizer.encode_example(enc, ex, ex["format"])[0]]
    shard = np.fromfile(os.path.join(out, "pretrain_annotated_train.bin"), dtype=np.uint16)
    assert shard[:len(ids)].tolist() == ids and any(d["story"].startswith("Title: ") for d in docs)


def test_an_sft_run_with_the_pretrain_mix_trains_on_both(tiny_base_dirs, tmp_path, capsys, one_thread):
    """--pretrain_mix 1 doubles the examples (one document per SFT example) and the run resumes only
    with the same mix."""
    said = {}
    for mix in ("0", "1"):
        sft.main(["--init_from", str(tiny_base_dirs["annotated"]), "--format", "anchored", "--pretrain_mix", mix,
                  "--max_iters", "1", "--batch_size", "1", "--eval_iters", "1", "--out_dir", str(tmp_path / mix)])
        said[mix] = capsys.readouterr().out
    n_sft = len(open(Path(checkpoint.load_checkpoint(tiny_base_dirs["annotated"])["data_dir"]) / "sft_train.jsonl").readlines())
    assert f"{n_sft:,} examples in" in said["0"] and f"{2 * n_sft:,} examples in" in said["1"]
    with pytest.raises(SystemExit, match="pretrain_mix"):
        sft.main(["--resume", "--out_dir", str(tmp_path / "1"), "--pretrain_mix", "0.5", "--max_iters", "2"])


def _kl_rows(enc, examples):
    x, y = sft.pack_examples(enc, examples, "anchored", block_size=512)
    return x, y, sft.free_value_positions(x, y, *_markers(enc))


def _markers(enc):
    return [enc.encode_single_token(t) for t in ("<|ann|>", "<|story|>", "<|bos|>")]


def test_the_free_value_positions_are_the_annotation_values_anchored_sft_leaves_untrained(tiny_data_dir):
    enc = tokenizer.load_tokenizer(str(tiny_data_dir))
    pinned = {"prompt": "Write a story about a dragon.", "annotation": dict(world.sample_annotation(__import__("random").Random(1)),
              character="dragon"), "constraints": {"character": "dragon"}, "response": "Once upon a time."}
    replay = sft.make_replay_examples(1, seed=0)[0]
    x, y, free = _kl_rows(enc, [pinned, replay])
    values = enc.decode(x[0, 1:][free[0, :-1]].tolist())  # the tokens the free positions predict
    pieces = [enc.decode(v) for f, _, v in tokenizer.annotation_pieces(enc.encode_ordinary, pinned["annotation"])
              if f != "character"]
    assert values == "".join(pieces)  # every free value, in order, and nothing else: not the pinned dragon, no key
    n_first = len(tokenizer.encode_example(enc, pinned, "anchored")[0])
    assert not free[0, n_first - 1:].any()  # the replay example trains its whole annotation: no free value
    assert (y[free] == -1).all()
    xs, ys = sft.pack_examples(enc, [pinned], "standard", block_size=512)
    assert not sft.free_value_positions(xs, ys, *_markers(enc)).any()
    # a plain document before them (a pretraining-mix row on a plain base) changes nothing after it
    plain = {"story": "Once upon a time there was a cat.", "annotation": None, "format": "plain"}
    x2, y2 = sft.pack_examples(enc, [plain, pinned, replay], "anchored", block_size=512)
    n_plain = len(tokenizer.encode_example(enc, plain, "plain")[0])
    free2 = sft.free_value_positions(x2, y2, *_markers(enc))
    assert torch.equal(free2[0, n_plain:n_plain + n_first], free[0, :n_first]) and not free2[0, :n_plain].any()


class ContextHashBase(torch.nn.Module):
    """A stand-in base whose next-token distribution at each position names one token, a hash of
    everything it has read so far (the sum of the ids, mod V): two positions get the same one only
    by chance, so a distribution used at the wrong position shows."""

    def __init__(self, n_vocab):
        super().__init__()
        self.n_vocab, self.dummy = n_vocab, torch.nn.Parameter(torch.zeros(()))

    def forward(self, idx, targets=None):
        return torch.nn.functional.one_hot(idx.cumsum(1) % self.n_vocab, self.n_vocab).float() * 30.0, None


def test_each_free_position_gets_its_own_base_distribution_through_packing_and_batching(tiny_data_dir):
    """Every stored distribution, in base_value_targets' order and in every batch PackedRows makes of
    shuffled, wrapped-around and repeated rows, belongs to the position it is used at: the base's
    reading of <|bos|><|ann|> and that annotation up to there."""
    enc = tokenizer.load_tokenizer(str(tiny_data_dir))
    ann_id, _, bos_id = _markers(enc)
    examples = [json.loads(line) for line in open(tiny_data_dir / "sft_train.jsonl").readlines()[:30]]
    x, y, free = _kl_rows(enc, examples + sft.make_replay_examples(5, seed=1))
    free_again, p_base = sft.base_value_targets(ContextHashBase(enc.n_vocab), x, y, enc, chunk=3)
    assert torch.equal(free, free_again) and x.size(0) > 3 and len(p_base) > 50

    def expected(row, t):  # the hash of <|bos|><|ann|> and the row's annotation up to column t
        a = max(i for i in range(t + 1) if row[i] == ann_id)
        return (bos_id + int(row[a:t + 1].sum())) % enc.n_vocab

    rows, cols = free.nonzero(as_tuple=True)
    assert p_base.float().argmax(-1).tolist() == [expected(x[r], t) for r, t in zip(rows.tolist(), cols.tolist())]
    assert len(set(p_base.float().argmax(-1).tolist())) > len(p_base) // 2  # the hash tells positions apart
    packed = sft.PackedRows(x, y, seed=3, base_targets=(free, p_base))
    n = packed.n_rows
    for start, count in ((0, 3), (n - 2, 5), (3 * n - 1, 2 * n + 3)):
        bx, by, brows, bcols, bp = packed.get(start, count)
        assert len(bp) == len(brows) == int((by[brows, bcols] == -1).sum())
        assert bp.float().argmax(-1).tolist() == [expected(bx[r], t) for r, t in zip(brows.tolist(), bcols.tolist())]


def test_base_value_targets_are_the_bases_distribution_in_its_own_format(tiny_data_dir, tiny_base_dirs):
    """At each free value, the distribution the KL pulls toward is the base's on <|bos|><|ann|>{the
    annotation so far}: the prompt it never saw left out."""
    enc = tokenizer.load_tokenizer(str(tiny_data_dir))
    base, _, _ = checkpoint.load_model(tiny_base_dirs["annotated"])
    examples = [json.loads(line) for line in open(tiny_data_dir / "sft_train.jsonl").readlines()[:3]]
    x, y, free = _kl_rows(enc, examples)
    free_again, p_base = sft.base_value_targets(base, x, y, enc, chunk=2)
    assert torch.equal(free, free_again) and p_base.shape == (int(free.sum()), enc.n_vocab)
    ids, _ = tokenizer.encode_example(enc, {"story": examples[0]["response"], "annotation": examples[0]["annotation"]}, "annotated")
    with torch.no_grad():
        own = torch.softmax(base(torch.tensor([ids]), torch.tensor([ids]))[0][0].float(), dim=-1)
    ann_at = int((x[0] == enc.encode_single_token("<|ann|>")).nonzero()[0])
    first = int(free[0].nonzero()[0])  # the first free position of the first example
    assert torch.allclose(p_base[0].float(), own[first - ann_at + 1], atol=1e-3)
    assert torch.allclose(p_base.float().sum(-1), torch.ones(len(p_base)), atol=1e-2)


def test_the_anchor_kl_is_zero_at_the_models_own_distribution_and_positive_elsewhere(tiny_data_dir, tiny_base_dirs):
    enc = tokenizer.load_tokenizer(str(tiny_data_dir))
    ckpt = checkpoint.load_checkpoint(tiny_base_dirs["annotated"])
    gpt = model.GPT(model.GPTConfig(**{**ckpt["model_args"], "dead_tokens": ()}))  # every SFT target live
    gpt.load_state_dict(ckpt["model"])
    examples = [json.loads(line) for line in open(tiny_data_dir / "sft_train.jsonl").readlines()[:2]]
    x, y, free = _kl_rows(enc, examples)
    rows, cols = free.nonzero(as_tuple=True)
    with torch.no_grad():
        logits, ce = gpt(x, y)
        own = torch.softmax(logits[rows, cols].float(), dim=-1)
        loss = sft.anchor_kl_loss(5.0)
        assert loss(gpt, (x, y, rows, cols, own)).item() == pytest.approx(ce.item(), abs=1e-5)
        one_hot = torch.zeros_like(own)
        one_hot[:, 7] = 1.0  # KL(one-hot || q) = -log q(7), per free position, summed, per target of y
        expected = ce - 5.0 * own[:, 7].log().sum() / (y != -1).sum()
        assert loss(gpt, (x, y, rows, cols, one_hot)).item() == pytest.approx(expected.item(), rel=1e-5)
        assert expected > ce + 1.0
    # with the base's dead tokens at -inf in the student too, as in a real run: finite, and a gradient
    student, _, _ = checkpoint.load_model(tiny_base_dirs["annotated"])
    _, p_base = sft.base_value_targets(student, x, y, enc)
    assert (p_base[:, list(student.config.dead_tokens)] == 0).all()
    student.train()
    live = y.masked_fill(y >= 0, enc.encode_single_token("<|eos|>"))  # a target the base never had dead
    loss = sft.anchor_kl_loss(1.0)(student, (x, live, rows, cols, p_base))
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in student.parameters() if p.grad is not None)


def test_an_sft_run_with_the_anchor_kl_stays_nearer_the_base_at_the_free_values(tiny_base_dirs, tmp_path, capsys, one_thread):
    """The same run with and without the term (same seed, same rows): with it, the model's
    distributions at the free values end closer to the base's. It needs --format anchored, and a
    run resumes only with the same weight."""
    base_dir = tiny_base_dirs["annotated"]
    kl_after = {}
    for weight in ("0", "20"):
        sft.main(["--init_from", str(base_dir), "--format", "anchored", "--anchor_kl", weight, "--lr", "3e-2",
                  "--max_iters", "12", "--batch_size", "2", "--eval_iters", "1", "--out_dir", str(tmp_path / weight)])
        said = capsys.readouterr().out
        assert ("anchor KL: weight 20 at" in said) == (weight == "20")
        gpt, ckpt, enc = checkpoint.load_model(tmp_path / weight)
        examples = [json.loads(line) for line in open(Path(ckpt["data_dir"]) / "sft_train.jsonl").readlines()[:20]]
        x, y, free = _kl_rows(enc, examples)
        base, _, _ = checkpoint.load_model(base_dir)
        _, p_base = sft.base_value_targets(base, x, y, enc)
        rows, cols = free.nonzero(as_tuple=True)
        with torch.no_grad():
            logits, ce = gpt(x, y)
            kl_after[weight] = sft.anchor_kl_loss(1.0)(gpt, (x, y, rows, cols, p_base)).item() - ce.item()
    assert kl_after["20"] < 0.5 * kl_after["0"]
    with pytest.raises(SystemExit, match="anchor_kl"):
        sft.main(["--resume", "--out_dir", str(tmp_path / "20"), "--anchor_kl", "1", "--max_iters", "14"])
    with pytest.raises(SystemExit, match="needs --format anchored"):
        sft.main(["--init_from", str(tiny_base_dirs["plain"]), "--format", "standard", "--anchor_kl", "1",
                  "--out_dir", str(tmp_path / "std")])


def test_sft_checkpoint_records_format_and_base(tiny_sft_dirs):
    for format, base_format in (("standard", "plain"), ("anchored", "annotated")):
        gpt, ckpt, enc = checkpoint.load_model(tiny_sft_dirs[format])
        assert (ckpt["stage"], ckpt["format"], ckpt["base_format"]) == ("sft", format, base_format)
        assert ckpt["config"]["format"] == format and "mode" not in ckpt["config"]
        assert not gpt.training and "optimizer" not in ckpt
        assert (tiny_sft_dirs[format] / "tokenizer.tiktoken").exists()  # the run carries its tokenizer

# -----------------------------------------------------------------------------
# Several processes = one process with the same global batch


def test_ddp_and_grad_accum_match_one_process(tiny_data_dir, tmp_path, one_thread):
    # float32: how a batch is split changes bf16 rounding, so only fp32 can match to 1e-6
    common = ["--data_dir", tiny_data_dir, *SMALL, "--max_iters", "3", "--eval_interval", "3",
              "--dtype", "float32"]
    pretrain.main([str(a) for a in [*common, "--out_dir", tmp_path / "one", "--batch_size", "4"]])
    pretrain.main([str(a) for a in [*common, "--out_dir", tmp_path / "acc", "--batch_size", "1",
                                     "--grad_accum", "4"]])
    run_script("-m", "torch.distributed.run", "--nproc_per_node=2", "pretrain.py", *common,
               "--out_dir", tmp_path / "ddp", "--batch_size", "1", "--grad_accum", "2")
    ref = [r["loss"] for r in log_of(tmp_path / "one") if "loss" in r]
    params = checkpoint.load_checkpoint(tmp_path / "one")["model"]
    for run in ("acc", "ddp"):
        assert [r["loss"] for r in log_of(tmp_path / run) if "loss" in r] == pytest.approx(ref, abs=3e-5)  # log rounds to 1e-5
        other = checkpoint.load_checkpoint(tmp_path / run)
        assert other["data_pos"] == 12
        for k in params:
            assert torch.allclose(params[k], other["model"][k], atol=1e-6), (run, k)

# -----------------------------------------------------------------------------
# Checkpoints survive being killed mid-write


def test_failed_write_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    checkpoint.save_checkpoint(path, {"step": 1})

    def killed(*args):
        raise KeyboardInterrupt  # the process dies between writing the tmp file and renaming it
    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_checkpoint(path, {"step": 2})
    assert torch.load(path, weights_only=True) == {"step": 1}


def test_sigkill_mid_write_leaves_a_loadable_checkpoint(tmp_path):
    path = tmp_path / "ckpt.pt"
    writer = (f"import itertools, torch, checkpoint\n"
              f"for i in itertools.count():\n"
              f"    ck = {{k: i for k in checkpoint.CKPT_KEYS}}\n"
              f"    ck['model'] = {{'w': torch.full((2_000_000,), float(i))}}\n"
              f"    checkpoint.save_checkpoint({str(path)!r}, ck)\n"
              f"    print(i, flush=True)\n")
    p = subprocess.Popen([sys.executable, "-c", writer], cwd=ROOT, env=ENV, stdout=subprocess.PIPE, text=True)
    for _ in range(3):  # a few complete writes, then SIGKILL somewhere inside the next ones
        p.stdout.readline()
    time.sleep(0.007)
    p.kill()
    p.wait()
    ckpt = checkpoint.load_checkpoint(path)
    assert ckpt["step"] >= 2 and torch.all(ckpt["model"]["w"] == ckpt["step"])


def test_corrupt_or_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        checkpoint.load_model(tmp_path)
    (tmp_path / "ckpt.pt").write_bytes(b"PK\x03\x04 half a zip file")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        checkpoint.load_model(tmp_path)

# -----------------------------------------------------------------------------
# Bad input: one line, non-zero exit, no traceback


def test_bad_inputs_give_clear_errors(tiny_data_dir, tiny_base_dirs, tiny_sft_dirs, tmp_path):
    ann, plain = tiny_base_dirs["annotated"], tiny_base_dirs["plain"]
    cases = [
        (pretrain.main, ["--n_embd", 100, "--n_head", 3], "n_embd=100 is not divisible by n_head=3"),
        (pretrain.main, ["--batch_size", 0], "--batch_size=0 must be a positive integer"),
        (pretrain.main, ["--resume", "--out_dir", tmp_path / "nothing"], "no checkpoint at"),
        (pretrain.main, ["--out_dir", ann, "--data_dir", tiny_data_dir], "already holds a checkpoint"),
        (pretrain.main, ["--resume", "--out_dir", tiny_sft_dirs["anchored"]], "is an SFT run"),
        (sft.main, ["--init_from", tmp_path / "nothing"], "no checkpoint at"),
        (sft.main, ["--init_from", tiny_sft_dirs["anchored"]], "is an SFT checkpoint"),
        (sft.main, ["--init_from", plain, "--format", "anchored", "--out_dir", tmp_path / "x"],
         "--allow_plain_base"),
        (sft.main, ["--init_from", ann, "--batch_size", -1, "--out_dir", tmp_path / "x"], "--batch_size=-1"),
    ]
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "ckpt.pt").write_bytes(b"\x00" * 100)
    cases.append((sft.main, ["--init_from", tmp_path / "corrupt"], "not a readable checkpoint"))
    other = tmp_path / "other_data"  # a dataset with a different tokenizer
    data.ensure_dataset(str(other), progress=False, n_stories=200, n_sft=10, n_sft_val=5,
                        vocab_size=600, tokenizer_docs=200)
    cases.append((sft.main, ["--init_from", ann, "--data_dir", other, "--out_dir", tmp_path / "x"],
                  "tokenizer mismatch"))
    for main, argv, expect in cases:
        msg = error_of(argv, main)
        assert isinstance(msg, str) and msg.startswith("error:") and expect in msg and "\n" not in msg, (argv, msg)
    # argparse: misspelt choice -> usage + one error line, exit 2
    assert error_of(["--init_from", ann, "--format", "anchord"], sft.main) == 2
    # and from the command line: non-zero exit, one line, no traceback
    r = subprocess.run([sys.executable, "sft.py", "--init_from", str(tiny_sft_dirs["standard"])],
                       cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1

# -----------------------------------------------------------------------------
# The commands of the README, end to end


def test_cli_tiny_preset_pretrain_then_sft(tiny_data_dir, tmp_path):
    # The README's commands with the tiny preset; smaller batches keep the test fast on 2 shared
    # cores (the full commands: see .work/readme_train.md for their timing).
    base, tuned = tmp_path / "base", tmp_path / "sft"
    fast = ["--batch_size", "1", "--eval_iters", "1"]
    run_script("pretrain.py", "--preset", "tiny", "--annotations", "--max_iters", "30", "--out_dir", base,
               "--data_dir", tiny_data_dir, *fast)
    run_script("sft.py", "--init_from", base, "--format", "anchored", "--max_iters", "20", "--out_dir", tuned, *fast)
    for out, steps in ((base, 30), (tuned, 20)):
        assert {"ckpt.pt", "log.jsonl", "loss.png"} <= {p.name for p in out.iterdir()}
        log = log_of(out)
        assert log[-1]["step"] == steps and log[-1]["loss"] < log[0]["val_loss"]  # it learned something
    ckpt = checkpoint.load_checkpoint(tuned)
    # SFT has no presets: its defaults came from the base (its batch_size, here the typed 1)
    assert "preset" not in ckpt["config"] and ckpt["config"]["batch_size"] == 1
    assert checkpoint.load_checkpoint(base)["config"]["preset"] == "tiny"
    assert ckpt["model_args"]["n_layer"] == PRESETS["tiny"]["n_layer"]


def test_a_finished_run_says_where_its_checkpoint_is_and_what_to_run_next(tiny_data_dir, tiny_base_dirs, tmp_path,
                                                                          capsys, one_thread):
    out = tmp_path / "base"
    pretrain.main(["--data_dir", str(tiny_data_dir), "--out_dir", str(out), "--max_iters", "2", "--batch_size", "1",
                   "--device", "cpu", "--n_layer", "1", "--n_head", "2", "--n_embd", "32", "--block_size", "512",
                   "--eval_iters", "1"])
    said = capsys.readouterr().out
    assert f"done: {out / 'ckpt.pt'}" in said and f"python sft.py --init_from {out} --format anchored" in said
    assert "pretraining, preset tiny:" in said  # no --preset on a CPU: the CPU's default, printed
    tuned = tmp_path / "tuned"
    sft.main(["--init_from", str(tiny_base_dirs["annotated"]), "--out_dir", str(tuned), "--max_iters", "1", "--batch_size", "1",
              "--device", "cpu", "--eval_iters", "1"])
    said = capsys.readouterr().out
    assert f"done: {tuned / 'ckpt.pt'}" in said and f"python sample.py --ckpt {tuned}" in said


@pytest.mark.parametrize("device_type, expected", [("cpu", "tiny"), ("cuda", "gpu-q-6l192"), ("mps", "gpu-4l128")])
def test_default_preset_suits_the_device(device_type, expected):
    """python pretrain.py with no --preset (issue 21): tiny on a CPU, a rung of the GPU ladder on a
    GPU. The GPU defaults train at >= 20 tokens per parameter, at most 4 epochs of the default
    dataset (~19M annotated tokens)."""
    assert pretrain.default_preset(device_type) == expected
    name = pretrain.default_preset(device_type)
    assert name in PRESETS
    if device_type != "cpu":
        c = PRESETS[name]
        with torch.device("meta"):
            gpt = model.GPT(model.GPTConfig(vocab_size=2048, **{k: c[k] for k in ("n_layer", "n_head", "n_embd")}))
        tokens = token_budget(make_config(TrainConfig, PRESETS, {"preset": name}), c["block_size"])
        assert 20 * gpt.num_params(non_embedding=False) <= tokens <= 4 * 19e6
    with pytest.raises(ValueError, match="tpu"):
        pretrain.default_preset("tpu")


def test_no_preset_follows_the_device_the_run_picks(monkeypatch):
    """with_default_preset asks check_device (what --device auto resolves to) for the device type; a
    typed --preset, or --resume, is left alone."""
    monkeypatch.setattr(pretrain, "check_device", lambda name: "cuda:0" if name in ("auto", "cuda") else name)
    assert pretrain.with_default_preset({})["preset"] == "gpu-q-6l192"
    assert pretrain.with_default_preset({"device": "cpu"})["preset"] == "tiny"
    assert pretrain.with_default_preset({"preset": "cpu-s"}) == {"preset": "cpu-s"}
    assert "preset" not in pretrain.with_default_preset({"resume": True, "out_dir": "x"})


def test_the_cuda_default_runs_and_its_next_commands_work_unchanged(tiny_data_dir, tmp_path, monkeypatch, capsys,
                                                                    one_thread):
    """The CUDA default preset (chosen as on a GPU, run here on the CPU with a tiny model and 2 steps):
    the start-up line names it, and the sft.py and sample.py commands it prints then run as printed
    (sft.py takes its defaults from the base's own config: here one epoch of the tiny SFT set at batch 1)."""
    import sample
    monkeypatch.setattr(pretrain, "check_device", lambda name: "cuda")
    out = tmp_path / "base"
    pretrain.main(["--data_dir", str(tiny_data_dir), "--out_dir", str(out), "--max_iters", "2", "--batch_size", "1",
                   "--device", "cpu", "--n_layer", "1", "--n_head", "2", "--n_embd", "32", "--eval_iters", "1"])
    said = capsys.readouterr().out
    assert "pretraining, preset gpu-q-6l192:" in said
    nxt = [line.split() for line in said.splitlines() if line.startswith("  python ")]
    assert [c[1] for c in nxt] == ["sft.py", "sample.py"]
    monkeypatch.chdir(tmp_path)
    sft.main(nxt[0][2:])
    sample.main(nxt[1][2:])
    assert "python sample.py" in capsys.readouterr().out  # sft.py's own next commands
    assert checkpoint.load_checkpoint(out)["config"]["preset"] == "gpu-q-6l192"
