"""Tests of device.py: device names, the dtype policy, loss scaling only for float16."""

import pytest
import torch

from device import autocast, grad_scaler, make_generator, pick_device, pick_dtype


def test_pick_device():
    assert pick_device("cpu") == "cpu"
    assert pick_device("auto") in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="'tpu' is not one of"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            pick_device("cuda")


def test_pick_dtype():
    assert pick_dtype("cpu", "float32") == torch.float32
    assert pick_dtype("cpu", "bfloat16") == torch.bfloat16
    assert pick_dtype("cpu") in (torch.float32, torch.bfloat16)  # the probe decides
    assert pick_dtype("mps") == torch.float32
    with pytest.raises(ValueError, match="'half' is not one of"):
        pick_dtype("cpu", "half")


def test_probe_leaves_the_global_rng_alone(monkeypatch):
    """The probe runs once per process, in whichever run comes first: it must not shift the
    random numbers of that run (dropout, init), or resume would not be exact."""
    from device import cpu_bf16_is_fast
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512_bf16": True})  # timing path
    cpu_bf16_is_fast.cache_clear()
    torch.manual_seed(0)
    cpu_bf16_is_fast()
    a = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(a, torch.rand(3))


def test_scaler_only_for_float16_and_autocast_only_below_fp32():
    assert grad_scaler("cpu", torch.float16).is_enabled()
    assert not grad_scaler("cpu", torch.bfloat16).is_enabled()
    assert not grad_scaler("cpu", torch.float32).is_enabled()
    with autocast("cpu", torch.float32):
        assert not torch.is_autocast_enabled("cpu")
    with autocast("cpu", torch.bfloat16):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


def test_make_generator_is_seeded_on_its_device():
    g = make_generator("cpu", 3)
    assert g.device == torch.device("cpu")
    assert torch.equal(torch.rand(4, generator=g), torch.rand(4, generator=make_generator("cpu", 3)))


def test_probe_trusts_amx_and_needs_some_bf16_instructions(monkeypatch):
    """AMX: bf16 without timing (a busy machine must not flip a run's dtype); no bf16 instructions
    at all: fp32 without timing."""
    from device import cpu_bf16_is_fast
    def timing_forbidden(*a, **k):
        raise AssertionError("the probe timed a matmul")
    for caps, want in (({"amx_bf16": True, "avx512_bf16": True}, True), ({"avx2": True}, False)):
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda caps=caps: caps)
        monkeypatch.setattr(torch, "randn", timing_forbidden)
        cpu_bf16_is_fast.cache_clear()
        assert cpu_bf16_is_fast() is want
    cpu_bf16_is_fast.cache_clear()
