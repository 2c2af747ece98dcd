"""Tests of data.py: the dataset on disk, built offline (sockets blocked), its files, and when a
build is reused, rebuilt or refused. CPU-only (seconds)."""

import json
import os
import socket

import numpy as np
import pytest

import data
import judge
import tokenizer
import world


def _block_sockets(mp):
    def no_network(*args, **kwargs):
        raise RuntimeError("network access attempted")
    mp.setattr(socket, "socket", no_network)
    mp.setattr(socket, "create_connection", no_network)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """A tiny dataset built (tokenizer trained, saved, loaded) with sockets blocked."""
    out = str(tmp_path_factory.mktemp("data"))
    with pytest.MonkeyPatch.context() as mp:
        _block_sockets(mp)
        meta = data.ensure_dataset(out, progress=False, n_stories=400, n_sft=200, n_sft_val=20)
        enc = tokenizer.load_tokenizer(out)
    return out, meta, enc


# --- the dataset on disk -----------------------------------------------------------------------

def test_dataset_files(tiny_data):
    out, meta, enc = tiny_data
    for name in data.OUTPUT_FILES:
        assert os.path.exists(os.path.join(out, name)), name
    bos = meta["special_ids"]["<|bos|>"]
    for shard in ("pretrain_plain_train", "pretrain_annotated_val"):
        arr = np.fromfile(os.path.join(out, shard + ".bin"), dtype=np.uint16)
        assert arr.size == meta["tokens"][shard] and arr[0] == bos
    arr = np.fromfile(os.path.join(out, "pretrain_plain_train.bin"), dtype=np.uint16)
    assert (arr == bos).sum() == meta["n_docs"]["train"]
    with open(os.path.join(out, "sft_train.jsonl")) as f:
        exs = [json.loads(line) for line in f]
    assert len(exs) == 200 and all(judge.is_house_format(e["response"]) for e in exs)
    with open(os.path.join(out, "eval_prompts.json")) as f:
        assert json.load(f) == world.EVAL_PROMPTS
    ent = meta["entropy"]
    assert ent["prior"] == pytest.approx(world.prior_entropy())
    assert ent["sft_open_mean"] <= ent["prior_mean"] / 3


def test_ensure_dataset_reuse_and_rebuild(tmp_path, capsys):
    out = str(tmp_path / "d")
    opts = dict(n_stories=200, n_sft=50, n_sft_val=10, vocab_size=600)
    m1 = data.ensure_dataset(out, progress=False, **opts)
    stamp = os.path.getmtime(os.path.join(out, "pretrain_plain_train.bin"))
    m2 = data.ensure_dataset(out, progress=False, **opts)
    assert m1 == m2 and os.path.getmtime(os.path.join(out, "pretrain_plain_train.bin")) == stamp
    m3 = data.ensure_dataset(out, progress=False, **dict(opts, noise=0.0))
    assert "rebuilding" in capsys.readouterr().out
    assert m3["options"]["noise"] == 0.0 and m3["n_corrupted"] == {}
    with open(os.path.join(out, "meta.json")) as f:
        assert json.load(f)["options"]["noise"] == 0.0
    with pytest.raises(ValueError, match="n_storys"):
        data.ensure_dataset(out, n_storys=5)


def test_a_build_from_before_an_option_is_reused_at_its_default(tmp_path, capsys):
    """meta.json of a build made before `titled` and `quality_tag` existed has no such keys: it was
    built untitled and untagged, so it is reused at their defaults and rebuilt (and said) for another value."""
    out = str(tmp_path / "old")
    opts = dict(n_stories=200, n_sft=50, n_sft_val=10, vocab_size=600)
    data.ensure_dataset(out, progress=False, **opts)
    path = os.path.join(out, "meta.json")
    with open(path) as f:
        meta = json.load(f)
    for option in ("titled", "quality_tag"):
        del meta["options"][option]
    with open(path, "w") as f:
        json.dump(meta, f)
    stamp = os.path.getmtime(os.path.join(out, "pretrain_plain_train.bin"))
    assert data.ensure_dataset(out, progress=False, **opts)["options"] == meta["options"]
    assert os.path.getmtime(os.path.join(out, "pretrain_plain_train.bin")) == stamp
    m = data.ensure_dataset(out, progress=False, **dict(opts, titled=0.5))
    assert "'titled': (0.0, 0.5)" in capsys.readouterr().out and m["options"]["titled"] == 0.5
    assert m["tokens"] != meta["tokens"]
    m = data.ensure_dataset(out, progress=False, **dict(opts, titled=0.5, quality_tag=1))
    assert "'quality_tag': (0, 1)" in capsys.readouterr().out and m["options"]["quality_tag"] == 1


def test_ensure_dataset_parallel_callers_build_once(tmp_path, capsys):
    import threading
    out = str(tmp_path / "p")
    opts = dict(n_stories=100, n_sft=20, n_sft_val=5, vocab_size=500)
    metas = []
    threads = [threading.Thread(target=lambda: metas.append(data.ensure_dataset(out, progress=False, **opts)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(metas) == 2 and metas[0] == metas[1]
    # a file missing from a finished build: an error naming it, or (repair, as python data.py) a rebuild
    os.remove(os.path.join(out, "sft_val.jsonl"))
    with pytest.raises(data.DatasetError, match="sft_val.jsonl is missing"):
        data.ensure_dataset(out, progress=False, **opts)
    data.ensure_dataset(out, progress=False, repair=True, **opts)
    assert "rebuilding" in capsys.readouterr().out and os.path.exists(os.path.join(out, "sft_val.jsonl"))
