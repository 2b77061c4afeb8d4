"""Without Ray the package still runs, and `bioplaus sweep` says how to install it."""
import sys

from click.testing import CliRunner

from bioplaus.cli import main


def _recipe(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text('[train]\ndataset = "fashion-mnist"\nnet = "mlp"\nrule = "fa"\nepochs = 1\n')
    return str(path)


def test_sweep_without_ray_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if not installed
    res = CliRunner().invoke(main, ["sweep", _recipe(tmp_path), "--out", str(tmp_path / "s")])
    assert res.exit_code == 1, res.output
    assert "pip install 'bioplaus[cluster]'" in res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "s").exists()  # nothing started


def test_planning_and_results_need_no_ray(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    res = CliRunner().invoke(main, ["sweep", _recipe(tmp_path), "--seeds", "0-2", "--dry-run",
                                    "--out", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    assert [ln.split()[:2] for ln in res.output.splitlines()] == [
        ["tiny/seed0", "new"], ["tiny/seed1", "new"], ["tiny/seed2", "new"]]
    res = CliRunner().invoke(main, ["results", "--sweep", str(tmp_path)])
    assert res.exit_code == 1 and "no sweep cells here" in res.output


def test_a_validation_error_is_not_called_a_test_error(tmp_path):
    """With val_size set a run evaluates on examples held out of the training set:
    the progress line, the final table and the results say so."""
    from bioplaus import sweep as sw
    from bioplaus.cli.sweep import Display, render_rows

    recipe = _recipe(tmp_path)
    (val,) = sw.expand([recipe], None, sw.parse_sets(["val_size=100"]), str(tmp_path / "v"))
    (test,) = sw.expand([recipe], None, {}, str(tmp_path / "t"))
    info = {"state": "running", "epoch": 1, "test_error": 12.5}
    assert "  val error 12.50%" in Display([val]).line(val, info)
    assert "  test error 12.50%" in Display([test]).line(test, info)
    row = {"run": "tiny/seed1", "state": "finished", "epochs": "1/1", "test_error": 12.5,
           "wall_s": 3.0, "message": ""}
    vrow = {**row, "split": "val"}
    trow = {**row, "split": "test"}
    assert "val error %" in render_rows([vrow]).splitlines()[0]
    assert "test error %" in render_rows([trow]).splitlines()[0]
    mixed = render_rows([trow, vrow]).splitlines()
    assert "test error" not in mixed[0] and "val error" not in mixed[0]
    assert mixed[1].split()[3] == "12.50" and "12.50 (val)" in mixed[2]
    cell = {"cell": "tiny", "dataset": "fashion-mnist", "net": "mlp", "rule": "fa", "paper": None,
            "n": 1, "runs": 1, "mean": 12.5, "std": None,
            "seeds": [{"run_dir": "x/seed1", "seed": "1", "state": "finished", "test_error": 12.5}]}
    assert "12.50 (validation)" in sw.render_aggregate([{**cell, "split": "val"}])
    assert "(validation)" not in sw.render_aggregate([{**cell, "split": "test"}])


def test_a_run_kept_without_its_checkpoint_is_not_trained_again_over_its_log(tmp_path):
    """A recorded run keeps log.h5 and train.log but not checkpoint.h5 (runs/ commits none).
    Finished, the sweep skips it; unfinished, it cannot resume, and the sweep must not
    start it afresh over its log: it is kept, and the message says what to do."""
    import os

    from bioplaus import sweep as sw
    from bioplaus.io import save_log
    from bioplaus.sweep_task import train_run

    recipe = _recipe(tmp_path)  # epochs = 1
    (run,) = sw.expand([recipe], [1], {}, str(tmp_path / "s"))
    os.makedirs(run.run_dir)
    log = os.path.join(run.run_dir, "log.h5")
    rec = {"epoch": 1, "test_error": 14.0, "train_error": 13.0, "steps": 10, "wall_s": 2.0}
    save_log(log, [rec], {"config": run.config})
    state, ck = sw.run_state(run.run_dir, run.config)
    assert state == "finished" and ck["history"][-1]["test_error"] == 14.0
    longer = {**run.config, "epochs": 3}
    assert sw.run_state(run.run_dir, longer)[0] == "no checkpoint"
    before = open(log, "rb").read()
    out = train_run(longer, run.run_dir, "test", 300.0, 1.0)
    assert out["state"] == "kept"
    assert "1 of 3 epochs" in out["message"] and "no checkpoint" in out["message"]
    assert "move" in out["message"]
    assert open(log, "rb").read() == before
    assert sorted(os.listdir(run.run_dir)) == ["log.h5"]
    # a run that diverged (its progress.json says so) is kept too, and the message says why
    with open(os.path.join(run.run_dir, "progress.json"), "w") as f:
        f.write('{"state": "diverged", "message": "the loss passed the guard"}')
    assert "It diverged" in train_run(longer, run.run_dir, "test", 300.0, 1.0)["message"]
