"""scripts/gpu-check.sh: every GPU check in one command, each part's output
recorded in runs/bench/ and never overwritten. Run here with a fake
nvidia-smi and a fake Python (the checks themselves need a GPU); the script
is copied into a scratch checkout so the real runs/ is never touched."""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")

BASIC = ("dirname", "date", "mkdir", "mv", "sed", "tr", "head", "nproc", "cat", "rm")


def _checkout(tmp_path):
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(os.path.join(ROOT, "scripts", "gpu-check.sh"), repo / "scripts")
    return repo


def _bin(tmp_path, gpu=True):
    b = tmp_path / "bin"
    b.mkdir()
    for name in BASIC:
        os.symlink(shutil.which(name), b / name)
    if gpu:
        (b / "nvidia-smi").write_text("#!/bin/sh\necho 'NVIDIA Test GPU-80GB'\n")
        (b / "nvidia-smi").chmod(0o755)
    return str(b)


def _venv(tmp_path, cupy=True, fail_on=""):
    """A fake interpreter: `-c` (the CuPy probe) succeeds when ``cupy``; any other
    call prints its arguments and fails when they contain ``fail_on``."""
    v = tmp_path / "venv" / "bin"
    v.mkdir(parents=True)
    probe = "exit 0" if cupy else "exit 1"
    fail = f'case "$*" in *"{fail_on}"*) echo boom; exit 3;; esac' if fail_on else ""
    (v / "python").write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "-c" ]; then {probe}; fi\n'
        f"{fail}\n"
        'echo "ran: $*"\n')
    (v / "python").chmod(0o755)
    return str(tmp_path / "venv")


def _run(repo, path, venv, *args):
    env = {"PATH": path, "VIRTUAL_ENV": venv, "HOME": str(repo)}
    return subprocess.run([shutil.which("bash"), str(repo / "scripts" / "gpu-check.sh"), *args],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=60)


def test_without_a_gpu_it_says_so_and_records_nothing(tmp_path):
    repo = _checkout(tmp_path)
    res = _run(repo, _bin(tmp_path, gpu=False), _venv(tmp_path))
    assert res.returncode == 1
    assert "nvidia-smi not found" in res.stderr
    assert not (repo / "runs").exists()


def test_without_cupy_it_says_how_to_install_it(tmp_path):
    repo = _checkout(tmp_path)
    res = _run(repo, _bin(tmp_path), _venv(tmp_path, cupy=False))
    assert res.returncode == 1
    assert "CuPy cannot use the GPU" in res.stderr and "'.[gpu]'" in res.stderr
    assert not (repo / "runs").exists()


def test_records_each_part_with_its_header_and_never_overwrites(tmp_path):
    repo = _checkout(tmp_path)
    path, venv = _bin(tmp_path), _venv(tmp_path)
    res = _run(repo, path, venv, "--quick")
    assert res.returncode == 0, res.stderr
    bench = repo / "runs" / "bench"
    # no git here: the commit is 'unknown'; the GPU's name is turned into a file-name tag
    names = sorted(p.name for p in bench.iterdir())
    assert names == ["test-gpu-80gb-profile-unknown.txt", "test-gpu-80gb-steps-unknown.txt",
                     "test-gpu-80gb-tests-unknown.txt"]
    steps = (bench / "test-gpu-80gb-steps-unknown.txt").read_text()
    assert "# machine: NVIDIA Test GPU-80GB" in steps
    assert "# commit: unknown" in steps and "# wall time:" in steps and "# exit status: 0" in steps
    # the command ran is the one recorded, with --quick's repeats
    assert "ran: -m bioplaus bench steps --device gpu --nets vgg8b,mlp" in steps
    assert "--repeats 5" in steps
    tests = (bench / "test-gpu-80gb-tests-unknown.txt").read_text()
    assert "ran: -m pytest -q -m gpu" in tests
    before = {p.name: p.read_bytes() for p in bench.iterdir()}
    again = _run(repo, path, venv)
    assert again.returncode == 0
    assert again.stderr.count("not overwriting") == 3
    assert {p.name: p.read_bytes() for p in bench.iterdir()} == before


def test_a_failing_part_is_recorded_and_the_others_still_run(tmp_path):
    repo = _checkout(tmp_path)
    res = _run(repo, _bin(tmp_path), _venv(tmp_path, fail_on="pytest"))
    assert res.returncode == 1
    assert "tests failed (exit 3)" in res.stderr
    bench = repo / "runs" / "bench"
    assert "# exit status: 3" in (bench / "test-gpu-80gb-tests-unknown.txt").read_text()
    assert "# exit status: 0" in (bench / "test-gpu-80gb-profile-unknown.txt").read_text()
    assert not list(bench.glob("*.part"))
