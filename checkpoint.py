"""
checkpoint.py: the one home of checkpoint I/O. Every script imports from here; none imports a
training script to read a checkpoint.

A checkpoint (out_dir/ckpt.pt) is one dict holding everything an exact resume needs (model,
optimizer, step, RNG states, data position) and what a reader needs (the model's arguments, the
format it was trained on, the hash of its tokenizer). It is written atomically and read with
weights_only=True. The tokenizer is copied next to it, so a run stays usable if data/ is rebuilt.

Every other output is written the same way, whole or not at all (write_atomic, save_figure): the
dataset's files, the evaluation's summaries and samples, the plots. torch is imported where a
checkpoint is read or written, so data.py can use write_atomic without paying for it.
"""

import contextlib
import io
import os
from pathlib import Path

from tokenizer import TOKENIZER_FILE, load_tokenizer, tokenizer_hash

CKPT_KEYS = ("model_args", "model", "config", "step", "optimizer", "rng", "data_pos",
             "tokenizer_hash", "data_dir", "format", "stage", "base_format")
# The same keys as checkpoints made before the README glossary's words spell them; load_checkpoint
# reads those under today's names (translate_keys), so every older run still loads and resumes.
OLD_KEYS = {"fmt": "format", "kind": "stage", "base_fmt": "base_format"}


@contextlib.contextmanager
def _atomic_file(path):
    """Open path.tmp (same folder) for writing; on success flush it to disk and os.replace it onto
    path. os.replace is atomic, so a process killed at any moment leaves either the old file or the
    new one, never half a file; on an error the temporary file is removed and the old file stays."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_atomic(path, data):
    """Write data (bytes, or str as UTF-8) to path whole or not at all (see _atomic_file)."""
    with _atomic_file(path) as f:
        f.write(data.encode() if isinstance(data, str) else data)


def pyplot():
    """matplotlib.pyplot, imported on first use with the file-only Agg backend (no display on a
    server): the one place every plot gets it from."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path, **savefig_kw):
    """A matplotlib figure to path (its format from the suffix), whole or not at all."""
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png", **savefig_kw)
    write_atomic(path, buf.getvalue())


def save_checkpoint(path, ckpt):
    """torch.save through _atomic_file: a run killed while saving keeps its previous checkpoint."""
    import torch
    with _atomic_file(path) as f:
        torch.save(ckpt, f)


def translate_keys(ckpt):
    """A checkpoint dict with OLD_KEYS under their new names, and an SFT config's `mode` (the
    flag's older name) as `format`; a checkpoint that has today's keys comes back as it was."""
    if not isinstance(ckpt, dict) or not any(k in ckpt for k in OLD_KEYS):
        return ckpt
    ckpt = {OLD_KEYS.get(k, k): v for k, v in ckpt.items()}
    config = ckpt.get("config")
    if isinstance(config, dict) and "mode" in config:
        ckpt["config"] = {("format" if k == "mode" else k): v for k, v in config.items()}
    return ckpt


def load_checkpoint(path, device="cpu"):
    """path: a ckpt.pt or the run directory holding one. weights_only=True: a checkpoint is data
    (tensors, numbers, strings), never code. Raises FileNotFoundError / ValueError naming the path."""
    path = Path(path)
    if path.is_dir() or not path.suffix:
        path = path / "ckpt.pt"
    import torch
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path} (train one with pretrain.py or sft.py "
                                f"--out_dir {path.parent})")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # truncated zip, pickle error, not a torch file at all, ...
        raise ValueError(f"{path} is not a readable checkpoint ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:120] if str(e) else ''})") from None
    ckpt = translate_keys(ckpt)
    missing = [k for k in CKPT_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise ValueError(f"{path} is not a nanoanchor checkpoint (missing {', '.join(missing)})")
    return ckpt


def check_out_dir(out_dir, flag="--out_dir"):
    """Make the output folder now, so a folder that cannot be written fails before any work."""
    try:
        os.makedirs(out_dir, exist_ok=True)
        probe = Path(out_dir) / f".write_test.{os.getpid()}"  # one per process: DDP ranks probe together
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise SystemExit(f"error: {flag} {out_dir}: cannot write there ({e.strerror or e})") from None


def check_tokenizer(ckpt, enc, data_dir):
    """The token ids in a checkpoint only mean something with the tokenizer it was trained with."""
    have, want = tokenizer_hash(enc), ckpt["tokenizer_hash"]
    if have == want:
        return
    if Path(data_dir).resolve() == Path(ckpt["data_dir"]).resolve():
        raise ValueError(f"tokenizer mismatch: {data_dir} was rebuilt since this checkpoint was trained "
                         f"(tokenizer {have[:12]} now, {want[:12]} then); retrain the model, or pass "
                         f"the data_dir of a copy of the old dataset")
    raise ValueError(f"tokenizer mismatch: the checkpoint was trained with tokenizer {want[:12]} "
                     f"(data_dir {ckpt['data_dir']}) but {data_dir} has {have[:12]}; use the "
                     f"checkpoint's data_dir")


def keep_tokenizer(data_dir, out_dir):
    """Copy the tokenizer next to the checkpoint: a run stays usable if data/ is rebuilt or moved."""
    write_atomic(Path(out_dir) / TOKENIZER_FILE, (Path(data_dir) / TOKENIZER_FILE).read_bytes())


def load_model(out_dir, device="cpu", data_dir=None):
    """-> (model in eval mode on device, ckpt dict without the optimizer state, tokenizer).
    For sample.py and eval_diversity.py. The tokenizer comes from data_dir if given, else the copy
    in out_dir, else the checkpoint's data_dir; it must be the one the model was trained with."""
    from model import GPT, GPTConfig
    ckpt = load_checkpoint(out_dir, device)
    ckpt.pop("optimizer")
    if data_dir is None:
        run_dir = Path(out_dir) if Path(out_dir).is_dir() else Path(out_dir).parent
        data_dir = run_dir if (run_dir / TOKENIZER_FILE).exists() else ckpt["data_dir"]
    try:
        enc = load_tokenizer(str(data_dir))
    except FileNotFoundError as e:
        raise FileNotFoundError(f"tokenizer of {out_dir} not found ({e}); pass data_dir=") from None
    check_tokenizer(ckpt, enc, data_dir)
    model = GPT(GPTConfig(**ckpt["model_args"]))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt, enc
