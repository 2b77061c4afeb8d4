"""`bioplaus oracle check` refuses files of different steps in one message;
the group's help lists its commands; a misspelt command gets a suggestion."""
import pytest
from click.testing import CliRunner

from bioplaus.cli import main

SMALL = ["--rule", "predsim", "--net", "mlp", "--num-layers", "2", "--num-hidden", "16"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("oracle")
    out = {}
    for name, extra in [("a", []), ("a2", []), ("seed", ["--seed", "2", "--batch-size", "4"]),
                        ("net", ["--num-hidden", "8"])]:
        p = str(d / f"{name}.h5")
        res = CliRunner().invoke(main, ["oracle", *SMALL, "--batch-size", "8", *extra, "--out", p])
        assert res.exit_code == 0, res.output
        out[name] = p
    return out


def test_files_of_different_steps_are_refused_naming_what_differs(files):
    res = CliRunner().invoke(main, ["oracle", "check", files["a"], files["seed"]])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1, res.output  # one message, not a row per parameter
    assert "not the same step" in lines[0]
    assert "seed 1 vs 2" in lines[0] and "batch_size 8 vs 4" in lines[0]
    assert "inf" not in lines[0]
    res = CliRunner().invoke(main, ["oracle", "check", files["a"], files["net"]])
    assert res.exit_code == 2 and "num_hidden 16 vs 8" in res.output


def test_the_same_step_is_compared_parameter_by_parameter(files):
    res = CliRunner().invoke(main, ["oracle", "check", files["a"], files["a2"]])
    assert res.exit_code == 0, res.output
    assert res.output.strip().splitlines()[-1].endswith("0 above tol 1e-06")


def test_oracle_help_lists_check_and_a_misspelt_command_gets_a_suggestion():
    res = CliRunner().invoke(main, ["oracle", "--help"])
    assert res.exit_code == 0
    assert "check" in res.output and "write" in res.output and "Commands:" in res.output
    res = CliRunner().invoke(main, ["oracle", "chek", "a.h5", "b.h5"])
    assert res.exit_code == 2
    assert "Did you mean 'check'?" in res.output and "--out" not in res.output
