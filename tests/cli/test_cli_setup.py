"""scripts/setup.sh says what it needs and why before failing (run with a
PATH that lacks apt-get, sudo or python3; nothing is installed)."""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _fake_bin(tmp_path, uid=1000, tools=()):
    """A PATH holding only what the script needs before it installs, a fake
    `id` (the user is ``uid``) and the given fake tools, which log their calls."""
    b = tmp_path / "bin"
    b.mkdir()
    for name in ("dirname", "grep", "rm"):
        os.symlink(shutil.which(name), b / name)
    (b / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    for name, body in tools:
        (b / name).write_text(f"#!/bin/sh\necho \"{name} $*\" >> {tmp_path}/calls\n{body}\n")
    for f in b.iterdir():
        f.chmod(0o755)
    return str(b)


def _setup(tmp_path, path, mode="run"):
    env = {"PATH": path, "HOME": str(tmp_path / "home"),
           "BIOPLAUS_SYSTEM_DATASETS": str(tmp_path / "system"),  # empty: no Debian package
           "BIOPLAUS_DATA": str(tmp_path / "data")}
    return subprocess.run([shutil.which("bash"), os.path.join(ROOT, "scripts", "setup.sh"), mode],
                          env=env, capture_output=True, text=True, timeout=60)


def _calls(tmp_path):
    p = tmp_path / "calls"
    return p.read_text().splitlines() if p.exists() else []


def test_without_apt_it_says_where_to_put_the_files(tmp_path):
    res = _setup(tmp_path, _fake_bin(tmp_path))
    assert res.returncode == 1
    err = res.stderr
    assert "needs Fashion-MNIST" in err and "apt-get not found" in err
    assert str(tmp_path / "data" / "fashion-mnist") in err  # where the files go
    assert "--data-dir DIR" in err and "bioplaus data fetch fashion-mnist" in err
    assert "Traceback" not in err and "command not found" not in err


def test_a_user_without_root_or_sudo_is_told_what_to_do_and_apt_is_not_run(tmp_path):
    res = _setup(tmp_path, _fake_bin(tmp_path, uid=1000, tools=[("apt-get", "exit 1")]))
    assert res.returncode == 1
    assert "you are not root and sudo is not installed" in res.stderr
    assert "apt-get install dataset-fashion-mnist" in res.stderr
    assert _calls(tmp_path) == []


def test_a_user_with_sudo_gets_apt_through_sudo(tmp_path):
    path = _fake_bin(tmp_path, uid=1000, tools=[("sudo", '"$@"'), ("apt-get", "exit 100")])
    res = _setup(tmp_path, path)
    assert res.returncode == 1
    assert "running apt-get through sudo" in res.stderr
    assert "`sudo apt-get update` failed" in res.stderr
    assert _calls(tmp_path)[:2] == ["sudo apt-get update -q", "apt-get update -q"]


def test_files_put_in_the_data_dir_are_found_and_python_is_asked_for_next(tmp_path):
    d = tmp_path / "data" / "fashion-mnist"
    d.mkdir(parents=True)
    for f in FILES:
        (d / f).write_bytes(b"")
    res = _setup(tmp_path, _fake_bin(tmp_path, tools=[("apt-get", "exit 1")]), mode="test")
    assert res.returncode == 1
    assert f"Fashion-MNIST found in {d}" in res.stderr
    assert "python3 not found" in res.stderr  # this PATH has none: nothing was installed
    assert _calls(tmp_path) == []


def test_unknown_mode_is_refused_with_the_usage(tmp_path):
    res = _setup(tmp_path, _fake_bin(tmp_path), mode="tset")
    assert res.returncode == 2 and "usage: bash scripts/setup.sh [run|test]" in res.stderr


def test_the_test_install_and_the_run_install_are_separate():
    text = open(os.path.join(ROOT, "scripts", "setup.sh")).read()
    assert 'run) extras=""' in text and 'extras="test,plot"' in text
    assert "setup.sh test" in open(os.path.join(ROOT, "scripts", "test.sh")).read()
    assert "setup.sh run" in open(os.path.join(ROOT, "scripts", "main.sh")).read()
    assert "bash scripts/test.sh" in open(os.path.join(ROOT, ".ci", "run")).read()
