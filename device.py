"""
Where a run computes and in which precision: one policy that training, SFT, sampling and
evaluation all use.

    device = pick_device("auto")          # "cuda" > "mps" > "cpu"
    dtype = pick_dtype(device)            # torch.bfloat16, torch.float16 or torch.float32
    scaler = grad_scaler(device, dtype)   # loss scaling, enabled only for float16
    with autocast(device, dtype):
        _, loss = model(x, y)

The policy ("auto"):
- CUDA with bf16 (Ampere and later): bf16 autocast. Same exponent range as fp32, so no loss scaling.
- CUDA without bf16 (T4, V100, RTX 20xx): fp16 autocast with a GradScaler (fp16 overflows above
  65,504 and underflows small gradients; the scaler multiplies the loss up and skips steps whose
  gradients overflowed).
- MPS: fp32 (asked-for bf16/fp16 is allowed, but not chosen for you).
- CPU: bf16 only where a probe shows that a bf16 matmul really is faster than an fp32 one (CPUs
  with AMX or avx512_bf16 run it 3-6x faster; elsewhere bf16 is emulated and slower), else fp32.

Autocast runs matmuls in the low precision and keeps reductions (softmax, norms, the loss) in
fp32. Master weights, optimizer state and checkpoints stay fp32 whatever the dtype.
"""

import functools
import os
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# The --device and --dtype flags of every script, defined here once: loop.LoopConfig's fields
# (opt(**DEVICE_FLAGS[name])), and add_device_flags for the scripts with a plain argparse parser.
DEVICE_FLAGS = {
    "device": dict(default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps"),
    "dtype": dict(default="auto", choices=("auto", *DTYPES),
                  help="compute dtype under autocast: auto (device.pick_dtype: bf16 where the device runs "
                       "it fast, fp16 + loss scaling on older GPUs, else fp32); weights stay fp32"),
}


def add_device_flags(parser, use="", names=("device", "dtype")):
    """--device and --dtype (DEVICE_FLAGS) on an argparse parser; `use`: what they do in this
    script, added to their --help."""
    for name in names:
        kw = DEVICE_FLAGS[name]
        parser.add_argument(f"--{name}", **{**kw, "help": f"{kw['help']}; {use}" if use else kw["help"]})


def pick_device(name="auto"):
    """"auto" -> "cuda" if available, else "mps", else "cpu"; any other name is checked."""
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    device_type = name.split(":")[0]
    if device_type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {name!r} is not one of auto, cpu, cuda, cuda:N, mps")
    if device_type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but torch sees no CUDA GPU; use --device cpu")
    if name.startswith("cuda:") and not (name[5:].isdigit() and int(name[5:]) < torch.cuda.device_count()):
        raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if device_type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} asked for, but MPS is not available; use --device cpu")
    return name


def check_device(name, flag="--device"):
    """pick_device for a command line: a bad device is a one-line error, not a traceback."""
    try:
        return pick_device(name)
    except ValueError as e:
        raise SystemExit(f"error: {flag}: {e}") from None


@functools.cache
def cpu_bf16_is_fast(n=512, repeats=3):
    """Probe, once per process: is an (n,n) bf16 matmul at least 1.5x faster than fp32 here?
    The capability flags say whether the CPU has bf16 instructions at all (no: skip the timing) and
    whether it has AMX (yes: fast, skip the timing); otherwise the timing says whether torch uses
    the bf16 instructions rather than emulating bf16."""
    caps = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    if caps and not any(caps.get(k) for k in ("amx_bf16", "avx512_bf16", "bf16", "sve_bf16")):
        return False
    if caps.get("amx_bf16"):
        # AMX tiles are the fast path oneDNN takes; a timing on a busy machine could say otherwise
        # by chance, and the dtype of a run must not depend on what else the machine was doing
        return True
    a = torch.randn(n, n, generator=torch.Generator().manual_seed(0))  # leave the global RNG alone

    def best(x):
        x @ x  # warm up (oneDNN builds its kernel on the first call)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            x @ x
            times.append(time.perf_counter() - t0)
        return min(times)
    return best(a) > 1.5 * best(a.bfloat16())


def pick_dtype(device, requested="auto"):
    """The compute dtype for autocast on `device` (see the module docstring)."""
    if requested != "auto":
        if requested not in DTYPES:
            raise ValueError(f"dtype {requested!r} is not one of auto, {', '.join(DTYPES)}")
        return DTYPES[requested]
    device_type = device.split(":")[0]
    if device_type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device_type == "cpu" and cpu_bf16_is_fast():
        return torch.bfloat16
    return torch.float32


# torch.compile's break-even in rows trained (steps x rows per step): compile seconds over the
# seconds saved per row. CPU: from bench/README.md's timing of the 4L/128 step and its compile
# (~360-800 steps of 4 rows), rounded up. CUDA: an estimate, not measured, that compiles the GPU
# ladder's two largest rungs and not the two smallest.
COMPILE_BREAK_EVEN_ROWS = {"cpu": 4_000, "cuda": 256_000}


def cpu_compiler():
    """The C++ compiler torch.compile's CPU backend (inductor) needs, or None when there is none:
    $CXX, else g++ (clang++ on a Mac), inductor's defaults on Linux and macOS. Without one a CPU run
    stays eager."""
    cxx = os.environ.get("CXX") or ("clang++" if sys.platform == "darwin" else "g++")
    return cxx if shutil.which(cxx) else None


NO_COMPILER = "no C++ compiler for torch.compile on this CPU ($CXX or g++)"


def can_compile(device_type):
    """Can torch.compile run here? Everywhere but on a CPU without a C++ compiler (cpu_compiler)."""
    return device_type != "cpu" or cpu_compiler() is not None


def compile_pays(device, steps, rows_per_step, requested="auto"):
    """Whether a run of `steps` more optimizer steps of `rows_per_step` rows should torch.compile
    its model ("auto": when it pays for its compile time, by COMPILE_BREAK_EVEN_ROWS, and on a CPU
    only with a C++ compiler; "on" / "off" as asked, "on" exiting on a CPU without one) ->
    (compile?, the start-up line that says why)."""
    device_type = device.split(":")[0]
    rows = COMPILE_BREAK_EVEN_ROWS.get(device_type)
    pays = f"pays for itself after ~{-(-rows // rows_per_step):,} steps" if rows else f"not measured on {device}"
    if requested == "on" and not can_compile(device_type):
        raise SystemExit(f"error: --compile on: {NO_COMPILER}; install one or use --compile off")
    if requested in ("on", "off"):
        return requested == "on", f"{'compiling' if requested == 'on' else 'not compiling'} (--compile {requested}): {pays}"
    if requested != "auto":
        raise ValueError(f"compile={requested!r} is not one of auto, on, off")
    if not can_compile(device_type):
        return False, f"not compiling: {NO_COMPILER}; staying eager"
    if rows is not None and steps * rows_per_step >= rows:
        return True, f"compiling: {pays} (this run: {steps:,}; --compile off to skip)"
    return False, f"not compiling: {pays}" + (f", this run has {steps:,}" if rows else "") + " (--compile on to force it)"


def autocast(device, dtype):
    """Mixed precision for the forward pass (and the backward it records); fp32: nothing."""
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype)


def grad_scaler(device, dtype):
    """A GradScaler that scales only for float16 (bf16 and fp32 need none: a disabled scaler's
    scale(), step() and update() are plain pass-throughs, so the loop has one shape)."""
    return torch.amp.GradScaler(device.split(":")[0], enabled=dtype == torch.float16)


def make_generator(device, seed):
    """A seeded torch.Generator on `device`, where the model's random draws happen (a CPU
    generator cannot draw a CUDA tensor). Same seed, same device: same samples."""
    return torch.Generator(device=device).manual_seed(seed)


# -----------------------------------------------------------------------------
# Several processes: torchrun starts one per GPU (or several on a CPU, for tests with gloo)


@dataclass
class Dist:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: str = "cpu"

    @property
    def master(self):
        return self.rank == 0


def setup_distributed(device_name):
    """One process: nothing to do. Under torchrun (RANK set): nccl on CUDA, gloo on CPU."""
    device = check_device(device_name)
    if device.startswith("cuda"):
        torch.set_float32_matmul_precision("high")  # TF32 for what autocast leaves in fp32
    if "RANK" not in os.environ:
        return Dist(device=device)
    rank, local, world_size = (int(os.environ[k]) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE"))
    if device.startswith("cuda"):
        device = f"cuda:{local}"
        torch.cuda.set_device(device)
    elif device != "cpu":
        raise SystemExit(f"error: torchrun needs --device cuda or cpu, not {device}")
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Dist(rank, local, world_size, device)
