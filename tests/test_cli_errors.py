"""Every bad input is a one-line error, and nothing is lost.

A table of bad command lines across the six CLIs. Each one must end with a non-zero exit, an
error message and no traceback, and leave every existing checkpoint byte-for-byte as it was.
The CLIs run in-process through main(argv) (SystemExit is what `python x.py` would exit with),
on the session's tiny dataset and checkpoints (tests/conftest.py).
"""

import hashlib
import importlib
import shutil

import pytest

import data

# {tag} placeholders, filled by the `paths` fixture below
BAD = [
    # data.py
    ("data", "--out_dir {tmp}/d --narrowness 2"),
    ("data", "--out_dir {tmp}/d --narrowness -0.1"),
    ("data", "--out_dir {tmp}/d --vocab_size 10"),
    ("data", "--out_dir {tmp}/d --vocab_size 70000"),
    ("data", "--out_dir {tmp}/d --n_stories -3"),
    ("data", "--out_dir {tmp}/d --n_stories 1"),
    ("data", "--out_dir {tmp}/d --noise 1.5"),
    ("data", "--out_dir {tmp}/d --titled -0.5"),
    ("data", "--out_dir {tmp}/d --quality_tag 2"),
    ("data", "--out_dir {tmp}/d --n_sft -1"),
    ("data", "--out_dir {tmp}/d --n_sft_val 0"),
    ("data", "--out_dir {tmp}/d --show -1"),
    ("data", "--out_dir {unwritable} --n_stories 50"),
    ("data", "--n_stories many"),
    # pretrain.py (each with the tiny data, so nothing builds a dataset)
    ("pretrain", "{data} --out_dir {tmp}/p --block_size 100000"),
    ("pretrain", "{data} --out_dir {unwritable}"),
    ("pretrain", "{data} --out_dir {tmp}/p --device tpu"),
    ("pretrain", "{data} --out_dir {tmp}/p --batch_size 0"),
    ("pretrain", "{data} --out_dir {tmp}/p --grad_accum 0"),
    ("pretrain", "{data} --out_dir {tmp}/p --max_iters -1"),
    ("pretrain", "{data} --out_dir {tmp}/p --lr 0"),
    ("pretrain", "{data} --out_dir {tmp}/p --min_lr_frac 2"),
    ("pretrain", "{data} --out_dir {tmp}/p --warmup_iters -5"),
    ("pretrain", "{data} --out_dir {tmp}/p --weight_decay -1"),
    ("pretrain", "{data} --out_dir {tmp}/p --beta1 1.5"),
    ("pretrain", "{data} --out_dir {tmp}/p --beta2 -0.1"),
    ("pretrain", "{data} --out_dir {tmp}/p --grad_clip -1"),
    ("pretrain", "{data} --out_dir {tmp}/p --eval_interval -1"),
    ("pretrain", "{data} --out_dir {tmp}/p --eval_iters 0"),
    ("pretrain", "{data} --out_dir {tmp}/p --log_interval 0"),
    ("pretrain", "{data} --out_dir {tmp}/p --n_layer 0"),
    ("pretrain", "{data} --out_dir {tmp}/p --n_head 3"),
    ("pretrain", "{data} --out_dir {tmp}/p --n_embd 0"),
    ("pretrain", "{data} --out_dir {tmp}/p --dropout 1.5"),
    ("pretrain", "{data} --out_dir {tmp}/p --preset huge"),
    ("pretrain", "{data} --out_dir {tmp}/p --max_iters ten"),
    ("pretrain", "{data} --out_dir {base}"),  # a checkpoint is there: never overwrite it
    ("pretrain", "{data} --resume --out_dir {corrupt}"),
    ("pretrain", "{data} --resume --out_dir {truncated}"),
    ("pretrain", "--data_dir {other_data} --resume --out_dir {base}"),  # another tokenizer
    ("pretrain", "{data} --resume --out_dir {base} --n_layer 3"),
    # sft.py
    ("sft", "--init_from {tmp}/nothing_here"),
    ("sft", "--init_from {corrupt}"),
    ("sft", "--init_from {truncated}"),
    ("sft", "--init_from {sft}"),  # an SFT checkpoint is not a base
    ("sft", "--init_from {base} --out_dir {tmp}/s --narrowness 2"),
    ("sft", "--init_from {base} --out_dir {tmp}/s --key_share 1.5"),
    ("sft", "--init_from {base} --out_dir {tmp}/s --key_share 0.1 --anchor_kl 1"),
    ("sft", "--init_from {base} --out_dir {tmp}/s --no-pinned_values --format standard"),
    ("sft", "--init_from {base} --out_dir {tmp}/s --n_sft_examples -1"),
    ("sft", "--init_from {base} --out_dir {tmp}/s --pretrain_mix -1"),
    ("sft", "--init_from {base} --out_dir {tmp}/s --pretrain_mix 1000000"),  # more documents than the data has
    ("sft", "--init_from {base} --out_dir {tmp}/s --lr -1"),
    ("sft", "--init_from {base} --out_dir {tmp}/s --format everything"),
    ("sft", "--init_from {base} --out_dir {tmp}/s --mode anchored"),  # no such flag: argparse says so
    ("sft", "--init_from {base} --out_dir {tmp}/s --device tpu"),
    ("sft", "--init_from {base} --out_dir {unwritable}"),
    ("sft", "--init_from {base} --out_dir {sft}"),  # a checkpoint is there
    ("sft", "--init_from {base} --out_dir {tmp}/s --data_dir {other_data}"),  # another tokenizer
    # sample.py
    ("sample", "--ckpt {corrupt}"),
    ("sample", "--ckpt {truncated}"),
    ("sample", "--ckpt {mismatched}"),  # its tokenizer copy is another one
    ("sample", "--ckpt {tmp}/nothing_here"),
    ("sample", "--ckpt {sft} --num_samples 0"),
    ("sample", "--ckpt {sft} --temperature -1"),
    ("sample", "--ckpt {sft} --top_k 0"),
    ("sample", "--ckpt {sft} --top_p 1.5"),
    ("sample", "--ckpt {sft} --no_repeat_ngram 1"),
    ("sample", "--ckpt {sft} --max_new_tokens -1"),
    ("sample", "--ckpt {sft} --batch_size 0"),
    ("sample", "--ckpt {sft} --annotation 'name: Zorg'"),
    ("sample", "--ckpt {sft} --device tpu"),
    # eval_diversity.py
    ("eval_diversity", "--ckpts base={corrupt} --out {tmp}/e"),
    ("eval_diversity", "--ckpts base={tmp}/nothing_here --out {tmp}/e"),
    ("eval_diversity", "--ckpts base={base} --out {tmp}/e --num_samples 1"),
    ("eval_diversity", "--ckpts base={base} --out {tmp}/e --batch_size 0"),
    ("eval_diversity", "--ckpts base={base} --out {tmp}/e --top_p 1.5"),
    ("eval_diversity", "--ckpts base={base} --out {tmp}/e --no_repeat_ngram 1"),
    ("eval_diversity", "--ckpts base={base} --out {tmp}/e --n_boot 0"),
    ("eval_diversity", "--ckpts base={base} --out {tmp}/e --threads -1"),
    ("eval_diversity", "--ckpts base={base} --out {tmp}/e --narrowness 2"),
    ("eval_diversity", "--ckpts base={base} --out {tmp}/e --temperature -1"),
    ("eval_diversity", "--ckpts base={base} --out {tmp}/e --max_new_tokens 0"),
    ("eval_diversity", "--ckpts base={base} --out {unwritable}"),
    # reproduce.py
    ("reproduce", "--jobs 0"),
    ("reproduce", "--preset everything"),
    ("reproduce", "--out {unwritable} --runs {tmp}/r"),
    ("reproduce", "--out {tmp}/o --runs {unwritable}"),
]


def _fingerprint(dirs):
    """bytes hash and mtime of every file under the checkpoint folders."""
    out = {}
    for d in dirs:
        for p in sorted(d.rglob("*")):
            if p.is_file():
                out[str(p)] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def paths(tiny_data_dir, tiny_base_dirs, tiny_sft_dirs, tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_inputs")
    other = root / "other_data"  # a dataset with another tokenizer
    data.ensure_dataset(str(other), progress=False, n_stories=300, n_sft=20, n_sft_val=5, vocab_size=600,
                        tokenizer_docs=300)
    good = tiny_base_dirs["annotated"] / "ckpt.pt"
    corrupt, truncated, mismatched = root / "corrupt", root / "truncated", root / "mismatched"
    for d in (corrupt, truncated):
        d.mkdir()
    (corrupt / "ckpt.pt").write_bytes(b"this is not a checkpoint" * 100)
    (truncated / "ckpt.pt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    shutil.copytree(tiny_base_dirs["annotated"], mismatched)
    shutil.copyfile(other / "tokenizer.tiktoken", mismatched / "tokenizer.tiktoken")
    (root / "a_file").write_text("a file, so nothing can be made under it")
    return {"data": f"--data_dir {tiny_data_dir}", "other_data": str(other), "base": str(tiny_base_dirs["annotated"]),
            "sft": str(tiny_sft_dirs["anchored"]), "corrupt": str(corrupt), "truncated": str(truncated),
            "mismatched": str(mismatched), "unwritable": str(root / "a_file" / "out"), "tmp": str(root),
            "_ckpt_dirs": [tiny_base_dirs["annotated"], tiny_sft_dirs["anchored"], corrupt, truncated, mismatched]}


def _argv(template, paths):
    import shlex
    return shlex.split(template.format(**{k: v for k, v in paths.items() if not k.startswith("_")}))


@pytest.mark.parametrize("script,template", BAD, ids=[f"{s}: {t}" for s, t in BAD])
def test_bad_input_is_one_line_error(script, template, paths, capsys, one_thread):
    before = _fingerprint(paths["_ckpt_dirs"])
    main = importlib.import_module(script).main
    with pytest.raises(SystemExit) as e:
        main(_argv(template, paths))
    code = e.value.code
    err = capsys.readouterr().err
    assert code not in (0, None), f"exit status {code!r}: the bad input was accepted"
    message = code if isinstance(code, str) else err.strip().splitlines()[-1]
    assert "error" in message and "\n" not in message.strip(), message
    assert "Traceback" not in err
    assert _fingerprint(paths["_ckpt_dirs"]) == before, "an existing checkpoint changed"


@pytest.mark.parametrize("script,template", [("data", "--out_dir {tmp}/d --vocab_size 10"),
                                             ("sample", "--ckpt {truncated}")])
def test_bad_input_as_a_real_process(script, template, paths):
    """The same through `python script.py`: what a user sees is one line on stderr, exit status != 0."""
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, os.path.join(root, f"{script}.py"), *_argv(template, paths)],
                       cwd=root, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "error" in r.stderr.strip().splitlines()[-1], r.stderr


def test_the_old_mode_flag_is_an_unknown_flag(paths, capsys):
    """sft.py's format flag is --format; --mode (its name before) gets argparse's own error."""
    import sft
    with pytest.raises(SystemExit) as e:
        sft.main(_argv("--init_from {base} --out_dir {tmp}/s --mode anchored", paths))
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("error: unrecognized arguments: --mode anchored")
