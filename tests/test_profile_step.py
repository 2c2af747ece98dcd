"""bench/profile_step.py: each kernel lands in the group its name says, and a small eager profile
accounts for every group."""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("profile_step", Path(__file__).parent.parent / "bench" / "profile_step.py")
profile_step = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(profile_step)


def test_kernels_are_grouped_by_what_they_do():
    group = profile_step.group_of
    assert group("aten::mm") == group("aten::addmm") == "linear layers"
    assert group("aten::bmm") == "attention matmuls"
    assert group("aten::_softmax") == "softmax forward"
    assert group("graph_0_cpp_fused__softmax__unsafe_view_add_arange_bitwise_and") == "softmax forward"
    assert group("aten::_softmax_backward_data") == "softmax backward"
    # the loss's fused kernels hold log_softmax, and their backward _log_softmax_backward_data
    assert group("graph_0_cpp_fused__log_softmax__log_softmax_backward_data__to_copy") == "loss"
    assert group("aten::nll_loss_forward") == "loss"
    assert group("aten::_fused_adamw_") == group("Optimizer.zero_grad#AdamW.zero_grad") == "optimizer"
    assert group("aten::copy_") == group("aten::rms_norm") == "everything else"


def test_a_small_eager_profile_prints_every_group(capsys):
    profile_step.main(["--compile", "off", "--n_layer", "1", "--n_embd", "32", "--n_head", "2", "--block", "64",
                       "--batch", "2", "--steps", "1", "--top", "3"])
    out = capsys.readouterr().out
    for g in profile_step.GROUPS:
        assert f"| {g} |" in out
    assert "| all (profiled) |" in out and "costliest kernels" in out
