"""What only a CUDA GPU can show (skipped elsewhere): bf16 (and fp16 + loss scaling) training steps
track fp32, torch.compile's inductor kernels match eager, FlexAttention's compiled kernel matches the
reference under bf16 too, and the scripts train, compile and save on the GPU end to end.

    python -m pytest -q tests/test_cuda.py      # on a machine with a GPU: about a minute (compiles)

FlexAttention's fp32 parity with the manual path is tests/test_model.py::test_flex_matches_manual_cuda;
sampling on the GPU with a seeded generator is test_model.py::test_sampling_draws_where_the_model_lives.
"""

import pytest
import torch

from device import autocast, grad_scaler
from model import GPT, GPTConfig

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; this machine has none")

BOS = 1


def packed_batch(B=4, T=256, seed=0, vocab=256):
    """Rows of several documents each (a <|bos|> at 0 and at a few places inside), on the GPU."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(2, vocab, (B, T + 1), generator=g)
    idx[:, 0] = BOS
    idx[0, [37, 150]] = BOS
    idx[1, 90] = BOS
    return idx[:, :-1].contiguous().cuda(), idx[:, 1:].contiguous().cuda()


def small(attention="sdpa", seed=0):
    torch.manual_seed(seed)
    cfg = GPTConfig(vocab_size=256, block_size=256, n_layer=2, n_head=4, n_embd=128, attention=attention, bos_id=BOS)
    return GPT(cfg).cuda()


def train_losses(model, dtype, steps=8, lr=1e-3):
    """Losses of `steps` AdamW steps on one fixed batch, under autocast(dtype) with the repo's scaler."""
    x, y = packed_batch()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    scaler = grad_scaler("cuda", dtype)
    losses = []
    for _ in range(steps):
        with autocast("cuda", dtype):
            _, loss = model(x, y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_training_tracks_fp32_cuda(dtype):
    """Eight steps from the same init on the same batch: every loss finite, the weights stay fp32,
    and the curve stays within 2% of the fp32 one (fp16 through the GradScaler, as on a T4)."""
    if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    ref = train_losses(small(), torch.float32)
    model = small()
    low = train_losses(model, dtype)
    assert all(torch.isfinite(torch.tensor(low)))
    assert low[-1] < low[0]  # it learns
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())
    torch.testing.assert_close(torch.tensor(low), torch.tensor(ref), rtol=0.02, atol=0)


def loss_and_grads(model, x, y, dtype=torch.float32):
    model.zero_grad(set_to_none=True)
    with autocast("cuda", dtype):
        _, loss = model(x, y)
    loss.backward()
    return loss.detach().float(), {n: p.grad.detach().clone() for n, p in getattr(model, "_orig_mod", model).named_parameters()}


@pytest.mark.parametrize("attention", ["sdpa", "flex"])
def test_compile_matches_eager_cuda(attention):
    """torch.compile (inductor, what --compile uses) gives eager's loss and gradients on packed,
    document-masked rows, and the compiled model's weights save without the _orig_mod. prefix."""
    x, y = packed_batch()
    eager = small(attention)
    compiled = torch.compile(small(attention))
    l1, g1 = loss_and_grads(eager, x, y)
    l2, g2 = loss_and_grads(compiled, x, y)
    torch.testing.assert_close(l2, l1, rtol=1e-4, atol=1e-4)
    for name in g1:
        torch.testing.assert_close(g2[name], g1[name], rtol=1e-3, atol=1e-4, msg=name)
    assert not any(k.startswith("_orig_mod.") for k in compiled._orig_mod.state_dict())


def test_flex_matches_manual_under_bf16_cuda():
    """The fused document-masked kernel and the plain-PyTorch reference, both under bf16 autocast:
    losses within bf16's precision."""
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    x, y = packed_batch()
    (l_ref, _), (l_flex, _) = (loss_and_grads(small(a), x, y, torch.bfloat16) for a in ("manual", "flex"))
    torch.testing.assert_close(l_flex, l_ref, rtol=1e-2, atol=0)


def test_scripts_train_compile_and_save_on_cuda(tiny_data_dir, tmp_path):
    """pretrain.py --device cuda --compile --attention flex, then sft.py on it: a few steps each,
    finite losses, plain checkpoints (the first thing to run on a freshly lent GPU)."""
    import json

    import pretrain
    import sft
    from checkpoint import load_checkpoint
    base, post = tmp_path / "base", tmp_path / "sft"
    pretrain.main(["--data_dir", str(tiny_data_dir), "--out_dir", str(base), "--max_iters", "6", "--batch_size", "4",
                   "--n_layer", "2", "--n_head", "2", "--n_embd", "64", "--device", "cuda", "--compile",
                   "--attention", "flex", "--eval_interval", "3", "--eval_iters", "2", "--log_interval", "1"])
    sft.main(["--init_from", str(base), "--format", "anchored", "--out_dir", str(post), "--max_iters", "3",
              "--batch_size", "4", "--device", "cuda", "--eval_interval", "0", "--eval_iters", "2"])
    for out in (base, post):
        records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
        assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records if "loss" in r)
        ckpt = load_checkpoint(out / "ckpt.pt")
        assert not any(k.startswith("_orig_mod.") for k in ckpt["model"])
