"""bench/gpu_first_light.sh (issue 21), checked on the CPU: it parses, its data command is the
gpu-quick plan's own, and with a budget too small for any part it still writes its one archive,
every part in parts.tsv either run or skipped, inside the budget."""

import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

import reproduce

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "gpu_first_light.sh"


def test_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_gpu_quick_data_job_is_data_py_on_the_cpu(tmp_path):
    """The script starts this command in the background; reproduce's own data job then finds the
    build done (same options), so nothing on the GPU waits for it."""
    data = reproduce.recipe(reproduce.PRESETS["gpu-quick"], tmp_path)[0]
    assert len(data) == 1 and Path(data[0].cmd[1]).name == "data.py"
    assert "--device" not in data[0].cmd


@pytest.mark.skipif(shutil.which("timeout") is None, reason="needs GNU timeout")
def test_dry_run_always_writes_its_archive(tmp_path):
    budget = 25
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "OUT": str(tmp_path / "out"), "CPU_CHECK": "1",
           "BUDGET_S": str(budget), "TMPDIR": str(tmp_path), "PYTHON": shutil.which("python") or "python3"}
    done = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    archive = tmp_path / "out" / "first_light.tar.gz"
    with tarfile.open(archive) as tar:
        names = {Path(n).as_posix().lstrip("./") for n in tar.getnames()}
        parts = tar.extractfile("./parts.tsv").read().decode().splitlines()
    assert {"env.txt", "parts.tsv", "logs/data.log"} <= names
    rows = {line.split("\t")[0]: line.split("\t") for line in parts[1:]}
    assert set(rows) == {"install", "bench_eager", "bench_compiled", "plan", "test_cuda", "reproduce", "total"}
    for name, (_, status, seconds, limit) in rows.items():
        if name != "total":
            assert status in ("0", "124", "skipped"), (name, status)
            assert int(seconds) <= int(limit) + 15, name
    assert int(rows["total"][2]) <= budget + 30  # the archive came before the 9-minute mark's analogue
    assert not any(n.endswith("ckpt.pt") or n.endswith(".bin") for n in names)
