"""The benchmark harness leaves no stage running when it is stopped."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.workspace import PROJECT, run_whole

# The child starts a grandchild, as `dvc repro` starts a stage, and waits for it.
FAMILY = "sleep 60 & echo $! > grandchild.pid; wait"


def alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split(")")[-1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def as_foreground() -> None:
    """Run in the child before exec: a test runner started as a background job passes SIGINT
    on as ignored, and Python then installs no KeyboardInterrupt handler; Ctrl-C at a
    foreground harness is the case under test."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(path: Path, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not (path.is_file() and path.read_text().strip()):
        assert time.monotonic() < deadline, f"{path} was not written"
        time.sleep(0.05)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process states from /proc")
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stopping_the_harness_stops_the_commands_it_started(tmp_path, stop):
    harness = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; "
         "from benchmarks.workspace import run_whole; "
         f"run_whole(['sh', '-c', {FAMILY!r}], Path(sys.argv[1]))", str(tmp_path)],
        cwd=PROJECT, stderr=subprocess.DEVNULL, preexec_fn=as_foreground)
    wait_for(tmp_path / "grandchild.pid")
    grandchild = int((tmp_path / "grandchild.pid").read_text())
    assert alive(grandchild)
    harness.send_signal(stop)
    assert harness.wait(timeout=20) != 0
    deadline = time.monotonic() + 10
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(grandchild)


def test_a_failing_command_raises_with_its_output(tmp_path):
    assert run_whole(["sh", "-c", "echo done"], tmp_path, capture=True) == "done\n"
    with pytest.raises(subprocess.CalledProcessError) as failure:
        run_whole(["sh", "-c", "echo partial; echo why >&2; exit 3"], tmp_path, capture=True)
    assert failure.value.returncode == 3
    assert (failure.value.output, failure.value.stderr) == ("partial\n", "why\n")
