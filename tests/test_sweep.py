"""Sweeps on a local Ray (2 CPUs): expansion, skip and resume, a killed worker, Ctrl-C."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from bioplaus import sweep as sw
from bioplaus.config import Config
from bioplaus.io import load_checkpoint
from bioplaus.seeds import SeedError, parse_seeds
from bioplaus.train import Trainer

ray = pytest.importorskip("ray")

# A small real run: an mlp on 3000 Fashion-MNIST images, 60 steps an epoch.
TINY = dict(dataset="fashion-mnist", net="mlp", rule="predsim", num_layers=2, num_hidden=256,
            train_subset=3000, test_subset=500, batch_size=50, epochs=3, dropout=0.1,
            lr_decay_milestones=[2], seed=1)


def _toml(d):
    def val(v):
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(str(x) for x in v) + "]"
        return str(v)
    return "[train]\n" + "".join(f"{k} = {val(v)}\n" for k, v in d.items())


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    path = tmp_path_factory.mktemp("recipes") / "tiny.toml"
    path.write_text(_toml(TINY) + "\n[paper]\nerror = 8.54\nsource = \"a test\"\n")
    return str(path)


@pytest.fixture(scope="module")
def local_ray():
    if ray.is_initialized():
        ray.shutdown()
    sw.start_ray(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, recipe):
    """The uninterrupted run, in this process, on one BLAS thread."""
    from threadpoolctl import threadpool_limits

    out = str(tmp_path_factory.mktemp("ref") / "run")
    (run,) = sw.expand([recipe], None, {}, out)
    with threadpool_limits(1):
        Trainer(Config.from_dict(run.config), out, progress=False, log=lambda *a: None).run()
    return load_checkpoint(os.path.join(out, "checkpoint.h5"))


def _assert_same_run(ck, ref):
    assert ck["step"] == ref["step"] and ck["epoch"] == ref["epoch"]
    for group in ("params", "buffers"):
        for k in ref[group]:
            np.testing.assert_array_equal(ck[group][k], ref[group][k], err_msg=k)
    for g in ref["optim"]:
        for k in ref["optim"][g]:
            np.testing.assert_array_equal(ck["optim"][g][k], ref["optim"][g][k])
    assert [r["test_error"] for r in ck["history"]] == [r["test_error"] for r in ref["history"]]


# ------------------------------------------------------------------ no Ray needed
def test_seed_lists():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("0,2,5") == [0, 2, 5]
    assert parse_seeds("1,3-5,3") == [1, 3, 4, 5]
    for bad, says in [("", "no seeds"), ("a", "'a' is not a seed"), ("4-2", "write 2-4"),
                      ("-1", ">= 0"), ("1,,2", "'' is not a seed")]:
        with pytest.raises(SeedError, match=says):
            parse_seeds(bad)


def test_expand_recipes_seeds_and_axes(tmp_path, recipe):
    sets = sw.parse_sets(["epochs=2", "lr=1e-3", "lr=5e-4", "lr-decay-milestones=1",
                          "nonlin=leakyrelu"])
    runs = sw.expand([recipe], parse_seeds("0-1"), sets, str(tmp_path))
    assert [r.name for r in runs] == ["tiny+lr=0.001/seed0", "tiny+lr=0.001/seed1",
                                      "tiny+lr=0.0005/seed0", "tiny+lr=0.0005/seed1"]
    assert [r.config["lr"] for r in runs] == [1e-3, 1e-3, 5e-4, 5e-4]
    assert {r.config["epochs"] for r in runs} == {2}
    assert {r.config["nonlin"] for r in runs} == {"leakyrelu"}
    assert runs[0].config["lr_decay_milestones"] == [1]
    assert runs[1].run_dir == os.path.join(str(tmp_path), "tiny+lr=0.001", "seed1")
    assert runs[0].paper["error"] == 8.54
    # no --seeds: the recipe's own seed; gpus per run: the runs train on the GPU
    (one,) = sw.expand([recipe], None, {}, str(tmp_path), gpus_per_run=0.5)
    assert (one.seed, one.config["device"]) == (1, "gpu")


def test_bad_sweeps_are_refused_with_the_reason(tmp_path, recipe):
    for items, says in [(["bogus=1"], "unknown key 'bogus'"), (["seed=3"], "--seeds"),
                        (["epochs"], "expected key=value"),
                        (["lr_decay_milestones=a,b"], "comma-separated integers")]:
        with pytest.raises(sw.SweepError, match=says):
            sw.parse_sets(items)
    with pytest.raises(sw.SweepError, match="--beta applies only"):
        sw.expand([recipe], None, sw.parse_sets(["beta=0.5", "rule=fa"]), str(tmp_path))
    other = tmp_path / "other"
    other.mkdir()
    (other / "tiny.toml").write_text(_toml(TINY))
    with pytest.raises(sw.SweepError, match="same name 'tiny'"):
        sw.expand([recipe, str(other / "tiny.toml")], None, {}, str(tmp_path))
    # a cell directory of another configuration is not reused
    runs = sw.expand([recipe], None, {}, str(tmp_path / "s"))
    sw.write_cells(runs)
    runs2 = sw.expand([recipe], None, sw.parse_sets(["lr=0.01"]), str(tmp_path / "s"))
    with pytest.raises(sw.SweepError, match="lr: 0.0005"):
        sw.write_cells(runs2)
    # ... but one written before a configuration key was added (the key at its default) is
    cell = tmp_path / "s" / "tiny" / "cell.json"
    doc = json.loads(cell.read_text())
    assert doc["config"]["nonlin"] == "relu"  # the default
    del doc["config"]["nonlin"]
    cell.write_text(json.dumps(doc))
    sw.write_cells(runs)
    assert json.loads(cell.read_text()) == doc  # left as it was


# ------------------------------------------------------------------ on Ray
def test_killed_worker_is_retried_and_resumes_to_the_same_bits(local_ray, tmp_path, recipe,
                                                               reference):
    (run,) = sw.expand([recipe], None, {}, str(tmp_path))
    ckpt = os.path.join(run.run_dir, "checkpoint.h5")
    killed = {}

    def on_poll(infos):
        info = infos.get(run.run_dir, {})
        if (not killed and info.get("state") == "running" and info.get("attempt") == 1
                and os.path.exists(ckpt) and info.get("step", 0) >= 20):
            killed["step"] = info["step"]
            os.kill(info["pid"], signal.SIGKILL)

    # checkpoints and progress reports often enough that a kill lands inside even a
    # fast run (its 180 steps can take under a second)
    rows = sw.run_sweep([run], checkpoint_every_s=0.1, poll_s=0.02, progress_every_s=0.02,
                        on_poll=on_poll)
    assert killed, "the run finished before it could be killed"
    prog = json.load(open(os.path.join(run.run_dir, "progress.json")))
    assert prog["state"] == "finished" and prog["attempt"] == 2
    log = open(os.path.join(run.run_dir, "train.log")).read()
    assert "resumed" in log  # the second attempt continued from the checkpoint
    assert rows[0]["state"] == "finished" and rows[0]["finished"]
    _assert_same_run(load_checkpoint(ckpt), reference)


def test_unfinished_run_resumes_and_finished_runs_are_skipped(local_ray, tmp_path, recipe,
                                                              reference):
    (run,) = sw.expand([recipe], None, {}, str(tmp_path))
    cfg = Config.from_dict({**run.config, "max_steps": 70})  # stopped in epoch 2
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # as the reference and the sweep's task (one BLAS thread)
        Trainer(cfg, run.run_dir, progress=False, log=lambda *a: None).run()
    assert sw.run_state(run.run_dir, run.config)[0] == "unfinished"
    rows = sw.run_sweep([run], poll_s=0.2)
    assert rows[0]["state"] == "finished"
    ckpt = os.path.join(run.run_dir, "checkpoint.h5")
    _assert_same_run(load_checkpoint(ckpt), reference)
    assert open(os.path.join(run.run_dir, "train.log")).read().count("resumed") == 1
    before = os.stat(ckpt).st_mtime_ns
    rows = sw.run_sweep([run], poll_s=0.2)
    assert rows[0]["state"] == "skipped" and os.stat(ckpt).st_mtime_ns == before
    # results over seeds read the sweep directory
    (cell,) = sw.aggregate(str(tmp_path))
    assert (cell["n"], cell["paper"], cell["std"]) == (1, 8.54, None)
    assert cell["mean"] == reference["history"][-1]["test_error"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_on_the_driver_stops_every_run_with_a_checkpoint(local_ray, tmp_path, recipe, sig):
    # SIGTERM (a scheduler's stop; the only one a driver started with nohup ... & hears, as
    # such a driver ignores SIGINT) stops it the same way.
    # also: a second sweep on the same directory meanwhile is refused run by run, harmlessly
    out = tmp_path / "sweep"
    address = ray.get_runtime_context().gcs_address
    cmd = [sys.executable, "-m", "bioplaus", "sweep", recipe, "--seeds", "0-1", "--out", str(out),
           "--address", address, "--checkpoint-every", "1e9", "--set", "epochs=1000",
           "--cpus-per-run", "0.5"]
    # a child inherits an ignored SIGINT, and Python then never raises KeyboardInterrupt: in the
    # full suite the driver ignored the SIGINT below; give it the default, as a terminal would
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    progs = [out / "tiny" / f"seed{k}" / "progress.json" for k in (0, 1)]
    deadline = time.time() + 60
    while time.time() < deadline:
        docs = [json.loads(p.read_text()) if p.exists() else {} for p in progs]
        if all(d.get("state") == "running" and d.get("step", 0) > 0 for d in docs):
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the runs did not start: " + proc.communicate()[0][-2000:])
    if sig == signal.SIGINT:
        runs = sw.expand([recipe], [0, 1], sw.parse_sets(["epochs=1000"]), str(out))
        second = sw.run_sweep(runs, cpus_per_run=0.5, poll_s=0.2)
        assert [r["state"] for r in second] == ["locked", "locked"]
        assert all("in use by another bioplaus train" in r["message"] for r in second)
        docs = [json.loads(p.read_text()) for p in progs]
        assert all(d["state"] == "running" and d["attempt"] == 1 for d in docs)  # untouched
    proc.send_signal(sig)
    try:  # the driver waits up to run_sweep's stop_timeout_s (300 s) for the tasks' checkpoints
        text = proc.communicate(timeout=330)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        tail = proc.communicate()[0][-3000:]
        docs = [p.read_text() if p.exists() else "" for p in progs]
        pytest.fail(f"the driver did not stop within 330 s of {sig.name}; its output ends:\n{tail}\n"
                    f"progress files: {docs}")
    assert proc.returncode == 130, text
    assert "run the same command again to resume" in text
    assert ("Ctrl-C" if sig == signal.SIGINT else "SIGTERM") + ": stopping every run" in text
    for p in progs:
        doc = json.loads(p.read_text())
        assert doc["state"] == "interrupted", doc
        ck = load_checkpoint(p.parent / "checkpoint.h5")
        # no periodic checkpoint was due: this mid-epoch one was written on Ctrl-C
        assert ck["batch"] > 0 and ck["step"] == doc["step"] > 0
        assert sw.run_state(str(p.parent), {**TINY, "epochs": 1000})[0] == "unfinished"
