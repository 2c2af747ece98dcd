"""Shared session fixtures: ONE tiny dataset and tiny trained checkpoints, made once per test run.

    tiny_data_dir   a small dataset (2,000 stories, 200 SFT examples, the default 2,048 vocabulary)
    tiny_base_dirs  {"annotated": out_dir, "plain": out_dir}: 1-layer, 32-wide, block 512 models
                    pretrained for a few steps (stage 'base'); for load_model, sampling, SFT
    tiny_sft_dirs   {"standard": out_dir (on the plain base), "anchored": out_dir (on the
                    annotated base)}: a few SFT steps each (stage 'sft')
    one_thread      run a test with torch on one thread (faster on a shared 2-core machine)

The models are untrained noise: tests check plumbing and shapes, not story quality.
"""

import pytest
import torch

import data
import pretrain
import sft

TINY_MODEL = ["--n_layer", "1", "--n_head", "2", "--n_embd", "32", "--block_size", "512"]
QUIET = ["--eval_iters", "2", "--log_interval", "5", "--eval_interval", "0"]


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_data")
    data.ensure_dataset(str(out), progress=False, n_stories=2000, n_sft=200, n_sft_val=40,
                        tokenizer_docs=2000)
    return out


def _with_one_thread(fn):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn()
    finally:
        torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_base_dirs(tiny_data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_base")
    dirs = {"annotated": root / "ann", "plain": root / "plain"}
    for format, out in dirs.items():
        flag = "--annotations" if format == "annotated" else "--no-annotations"
        _with_one_thread(lambda: pretrain.main(
            [flag, "--data_dir", str(tiny_data_dir), "--out_dir", str(out), "--max_iters", "10",
             "--batch_size", "2", "--device", "cpu", *TINY_MODEL, *QUIET]))
    return dirs


@pytest.fixture(scope="session")
def tiny_sft_dirs(tiny_base_dirs, tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_sft")
    dirs = {"standard": root / "standard", "anchored": root / "anchored"}
    for format, out in dirs.items():
        base = tiny_base_dirs["plain" if format == "standard" else "annotated"]
        _with_one_thread(lambda: sft.main(
            ["--init_from", str(base), "--format", format, "--out_dir", str(out), "--max_iters", "5",
             "--batch_size", "2", "--device", "cpu", *QUIET]))
    return dirs
