"""Tests of the one packer (data.pack_rows) and the rows built on it: pretraining's TokenRows (whole
documents, a cut document's header repeated) and SFT's packed examples and their order."""

import json

import numpy as np
import pytest
import torch

import data
import pretrain
import sft
import tokenizer
import world


def test_pack_rows_is_best_fit_decreasing_within_a_window():
    # longest first, each into the open row with the least room that fits it: 300 opens a row, 260
    # another, 250 fits only the second, 200 the first (in stream order, next-fit makes 3 rows)
    assert data.pack_rows([300, 250, 260, 200], 513) == [[0, 3], [1, 2]]
    sizes = np.random.default_rng(0).integers(60, 400, size=3000)
    rows = data.pack_rows(sizes, 513, window=1000)
    assert sorted(i for row in rows for i in row) == list(range(len(sizes)))  # every item once
    assert all(row == sorted(row) and sum(sizes[row]) <= 513 for row in rows)  # in stream order, fits
    assert all(len({i // 1000 for i in row}) == 1 for row in rows)  # a row never spans two windows
    assert sizes.sum() / (len(rows) * 513) > 0.95  # a few percent of padding
    assert rows == data.pack_rows(sizes, 513, window=1000)  # deterministic
    assert data.pack_rows([513, 513], 513) == [[0], [1]] and data.pack_rows([], 513) == []


def test_sft_rows_are_the_shared_packers_rows(tiny_data_dir):
    """sft.pack_examples puts examples where data.pack_rows says, each whole and once, padded."""
    enc = tokenizer.load_tokenizer(str(tiny_data_dir))
    examples = [json.loads(ln) for ln in (tiny_data_dir / "sft_train.jsonl").read_text().splitlines()]
    encoded = [tokenizer.encode_example(enc, ex, "anchored") for ex in examples]
    x, y = sft.pack_examples(enc, examples, "anchored", 512)
    rows = data.pack_rows([len(ids) for ids, _ in encoded], 513)
    assert x.shape == (len(rows), 512)
    pad = enc.encode_single_token("<|pad|>")
    for r, row in enumerate(rows):
        ids = [t for i in row for t in encoded[i][0]]
        assert x[r, :len(ids)].tolist() == ids[:512] and (x[r, len(ids):] == pad).all()
    assert int((y != -1).sum()) == sum(sum(mask[1:]) for _, mask in encoded)  # every masked token, once


@pytest.mark.parametrize("block_size", [512, 128])  # 128: most documents are cut into pieces
def test_pretraining_rows_keep_every_story_token_with_its_annotation(tiny_data_dir, block_size):
    enc = tokenizer.load_tokenizer(str(tiny_data_dir))
    sid = lambda t: enc.encode_single_token(t)  # noqa: E731
    bos, ann, story = sid("<|bos|>"), sid("<|ann|>"), sid("<|story|>")
    rows = pretrain.TokenRows(tiny_data_dir / "pretrain_annotated_train.bin", block_size, bos, story)
    x, y = rows.get(0, rows.n_rows)
    assert (x[:, 0] == bos).all()  # every row starts at a document (or a repeated header)
    targets = []
    for xr, yr in zip(x.tolist(), y.tolist()):
        for j, t in enumerate(yr):
            if t == -1:
                continue
            b = max(i for i in range(j + 1) if xr[i] == bos)  # the document position j belongs to
            if j > b:  # the document's whole header is in view: <|bos|><|ann|>...
                assert xr[b + 1] == ann, (j, b)
                if story in xr[b: j + 1]:  # ... and a story token sees the complete annotation
                    k = xr.index(story, b)
                    assert set(world.parse_annotation(enc.decode(xr[b + 2: k]))) == set(world.FIELDS), (j, b)
            targets.append(t)
    # one epoch trains every token of the stream once, <|bos|> excepted (never a target)
    stream = rows.tokens[rows.tokens != bos].astype(np.int64)
    assert np.array_equal(np.bincount(targets, minlength=enc.n_vocab), np.bincount(stream, minlength=enc.n_vocab))
    assert len(targets) == int(rows.row_targets.sum()) and rows.fill > (0.9 if block_size == 512 else 0.5)
    again = pretrain.TokenRows(tiny_data_dir / "pretrain_annotated_train.bin", block_size, bos, story)
    for start in (0, 5, rows.n_rows - 1):  # any data position gives the same rows (wrapping around)
        assert all(torch.equal(a, b) for a, b in zip(again.get(start, 3), rows.get(start, 3)))


def test_packed_rows_order_is_a_pure_function_of_the_row_number():
    x = torch.arange(5)[:, None].repeat(1, 3)
    rows = sft.PackedRows(x, x, seed=0)
    first = rows.get(0, 15)[0][:, 0].tolist()
    assert all(sorted(first[e * 5:(e + 1) * 5]) == list(range(5)) for e in range(3))  # each epoch: all rows once
    assert first[:5] != first[5:10]  # reshuffled every epoch
    assert sft.PackedRows(x, x, seed=0).get(7, 4)[0][:, 0].tolist() == first[7:11]  # resumable anywhere
