"""Recipes, the generated results table, and plots of a recorded run."""
import glob
import os

import pytest
from click.testing import CliRunner

from bioplaus.cli import main
from bioplaus.config import Config
from bioplaus.recipes import RecipeError, load_recipe
from bioplaus.results import END, START, collect, render_table, update_readme

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_recipe_in_runs_is_valid_and_the_paper_rows_are_complete():
    paths = glob.glob(os.path.join(HERE, "runs", "*", "*.toml"))
    recs = [load_recipe(p) for p in paths]
    from bioplaus.config import validate
    from bioplaus.train import check_rule_options

    for r in recs:
        cfg = Config.from_dict(r.config)  # every key is an option
        validate(cfg)
        check_rule_options(cfg)  # and every option applies to the recipe's rule
    with_paper = {(r.config["dataset"], r.config["net"], r.config["rule"]): r.paper["error"]
                  for r in recs if "error" in r.paper}
    lenet = {k[2]: v for k, v in with_paper.items() if k[1] == "lenet"}
    # biotorch's Fashion-MNIST LeNet benchmarks (issue 21); drtp has no published number
    assert lenet == {"backprop": 9.2, "fa": 13.06, "usf": 9.69, "brsf": 10.02, "frsf": 9.61,
                     "dfa": 12.81}
    # SPEC §7: 12 rows x 4 rules, 3 bio and 2 glob+sim numbers
    assert len(with_paper) - len(lenet) == 12 * 4 + 3 + 2
    assert with_paper[("fashion-mnist", "mlp", "predsim")] == 8.54
    assert with_paper[("cifar10", "vgg8b", "predsim-bio")] == 9.02
    fm = {r.config["rule"] for r in recs if r.config["dataset"] == "fashion-mnist"
          and r.config["net"] == "mlp"}
    assert {"pred-bio", "sim-bio", "predsim-bio", "fa", "frc-sym", "frc-sign", "frc-random",
            "frc-trainable"} <= fm


def test_bad_recipes_are_refused_with_the_file_named(tmp_path):
    p = tmp_path / "r.toml"
    p.write_text("[train]\nrule = 'pred'\nlearning_rate = 0.1\n")
    with pytest.raises(RecipeError, match=r"r\.toml: unknown configuration keys: learning_rate"):
        load_recipe(p)
    p.write_text("[train\n")
    with pytest.raises(RecipeError, match="not valid TOML"):
        load_recipe(p)


def test_results_table_is_generated_from_recorded_runs_and_plots(tmp_path):
    runs = tmp_path / "runs" / "fashion-mnist"
    runs.mkdir(parents=True)
    (runs / "mlp-pred.toml").write_text(
        "[train]\ndataset = 'fashion-mnist'\nnet = 'mlp'\nrule = 'pred'\nnum_layers = 2\n"
        "num_hidden = 32\nepochs = 2\ntrain_subset = 600\ntest_subset = 300\n"
        "[paper]\nerror = 8.6\nsource = 'paper'\n")
    (runs / "mlp-sim.toml").write_text("[train]\nrule = 'sim'\nnet = 'mlp'\ndataset = 'fashion-mnist'\n")
    out = str(runs / "mlp-pred")
    res = CliRunner().invoke(main, ["train", "--recipe", str(runs / "mlp-pred.toml"), "--out", out,
                                    "--no-progress"])
    assert res.exit_code == 0, res.output
    rows = collect(str(tmp_path / "runs"))
    assert [r["rule"] for r in rows] == ["pred", "sim"]
    assert rows[0]["epochs"] == 2 and rows[1]["ours"] is None
    table = render_table(rows)
    assert f"| 8.60 | [{rows[0]['ours']:.2f}](" in table and "not run yet" in table
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nold table\n{END}\noutro\n")
    res = CliRunner().invoke(main, ["results", "--runs-dir", str(tmp_path / "runs"),
                                    "--write", str(readme)])
    assert res.exit_code == 0, res.output
    text = readme.read_text()
    assert "old table" not in text and "intro" in text and "outro" in text and "[pred](" in text
    assert update_readme(text, table) == text  # regeneration is stable
    res = CliRunner().invoke(main, ["plot", out])
    assert res.exit_code == 0, res.output
    for name in ("errors.png", "exits.png"):
        with open(os.path.join(out, name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def _tiny_pred_recipe(tmp_path, epochs, paper=""):
    """runs/fashion-mnist/mlp-pred.toml under tmp_path: a tiny pred recipe with a paper number."""
    runs = tmp_path / "runs" / "fashion-mnist"
    runs.mkdir(parents=True)
    recipe = runs / "mlp-pred.toml"
    recipe.write_text(
        "[train]\ndataset = 'fashion-mnist'\nnet = 'mlp'\nrule = 'pred'\nnum_layers = 1\n"
        f"num_hidden = 16\nepochs = {epochs}\ntrain_subset = 300\ntest_subset = 200\n"
        "[paper]\nerror = 8.6\nsource = 'paper'\n" + paper)
    return runs, recipe


def test_runs_over_seeds_give_a_row_with_mean_std_and_links(tmp_path):
    runs, recipe = _tiny_pred_recipe(tmp_path, epochs=1)
    for seed in (1, 2):  # what `bioplaus sweep RECIPE --seeds 1-2 --out runs/fashion-mnist` writes
        res = CliRunner().invoke(main, ["train", "--recipe", str(recipe), "--seed", str(seed),
                                        "--out", str(runs / "mlp-pred" / f"seed{seed}"),
                                        "--no-progress"])
        assert res.exit_code == 0, res.output
    rows = collect(str(tmp_path / "runs"))
    # one row: the recipe has no run of its own, so no "not run yet" row beside the seeds'
    assert len(rows) == 1 and rows[0]["ours"] is None
    errs = [s["test_error"] for s in rows[0]["seeds"]]
    assert [s["seed"] for s in rows[0]["seeds"]] == ["1", "2"] and errs[0] != errs[1]
    table = render_table(rows).splitlines()
    assert len(table) == 3 and "not run yet" not in "\n".join(table)
    seeds_line = table[-1]
    import statistics
    assert f"{statistics.mean(errs):.2f} ± {statistics.stdev(errs):.2f} (n=2)" in seeds_line
    for seed, err in zip((1, 2), errs):
        assert f"[seed {seed}: {err:.2f}]({runs / 'mlp-pred' / f'seed{seed}' / 'train.log'})" \
            in seeds_line
    assert "| 1/1 (seeds) |" in seeds_line and "| 8.60 |" in seeds_line


def test_a_paper_that_reports_its_best_epoch_gets_best_and_final_per_seed(tmp_path):
    runs, recipe = _tiny_pred_recipe(tmp_path, epochs=3, paper="reports = 'best epoch'\n")
    res = CliRunner().invoke(main, ["train", "--recipe", str(recipe), "--out",
                                    str(runs / "mlp-pred" / "seed1"), "--no-progress"])
    assert res.exit_code == 0, res.output
    from bioplaus.io import load_log

    recs = load_log(str(runs / "mlp-pred" / "seed1" / "log.h5"))["records"]
    best = min(recs, key=lambda r: r["test_error"])
    line = render_table(collect(str(tmp_path / "runs"))).splitlines()[-1]
    assert "| 8.60 (best epoch) |" in line
    assert (f"[seed 1: {recs[-1]['test_error']:.2f}; best epoch {best['test_error']:.2f} at "
            f"epoch {best['epoch']}]") in line
