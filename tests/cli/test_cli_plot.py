"""`bioplaus plot` of real tiny runs: valid PNGs, percent ticks, whole epochs,
legend outside the axes, and a run without a finished epoch plots what it has."""
import os
import re

import pytest
from click.testing import CliRunner

from bioplaus.cli import main

pytest.importorskip("matplotlib")

TINY = ["--net", "mlp", "--num-layers", "2", "--num-hidden", "16", "--train-subset", "512",
        "--test-subset", "256", "--batch-size", "128", "--no-progress"]
PNG = b"\x89PNG\r\n\x1a\n"


def _train(out, *extra):
    res = CliRunner().invoke(main, ["train", *TINY, "--out", str(out), *extra])
    assert res.exit_code == 0, res.output


def _png(path):
    with open(path, "rb") as f:
        return f.read(8) == PNG


def test_plot_of_a_two_epoch_run_is_publication_clean(tmp_path):
    from bioplaus.plot import figures

    out = tmp_path / "run"
    _train(out, "--rule", "predsim", "--epochs", "2")
    res = CliRunner().invoke(main, ["plot", str(out)])
    assert res.exit_code == 0, res.output
    assert _png(out / "errors.png") and _png(out / "exits.png")
    (_, fig), (_, exits) = figures(str(out))
    fig.canvas.draw()
    exits.canvas.draw()
    for ax in [fig.axes[0], *exits.axes]:  # the right-hand panel shares the left's y axis
        ylabels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
        assert ylabels and all(re.fullmatch(r"\d+(\.\d+)?%", s) for s in ylabels), ylabels
        assert not [t.get_text() for t in ax.yaxis.get_minorticklabels() if t.get_text()]
    for ax in fig.axes:
        assert [t.get_text() for t in ax.get_xticklabels() if t.get_text()] == ["1", "2"]
        lines = {ln.get_label(): ln for ln in ax.get_lines()}
        assert lines["output"].get_linestyle() == "--"  # the last block stays visible
    # the legends sit outside every axes
    fr = fig.canvas.get_renderer()
    for f in (fig, exits):
        legs = f.legends + [ax.get_legend() for ax in f.axes if ax.get_legend()]
        assert legs
        for leg in legs:
            box = leg.get_window_extent(fr)
            for ax in f.axes:
                assert not box.overlaps(ax.get_window_extent(fr))


def test_plot_of_a_run_without_a_finished_epoch_plots_what_it_has(tmp_path):
    out = tmp_path / "short"
    _train(out, "--rule", "pred-bio", "--epochs", "2", "--max-steps", "2")
    res = CliRunner().invoke(main, ["plot", str(out)])
    assert res.exit_code == 0, res.output
    assert "errors.png" in res.output and _png(out / "errors.png")
    res = CliRunner().invoke(main, ["plot", str(tmp_path)])
    assert res.exit_code == 1 and "no log.h5 or checkpoint.h5" in res.output
