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
