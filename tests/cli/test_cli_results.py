"""`bioplaus results` where there are no recipes says where it looked."""
import os

from click.testing import CliRunner

from bioplaus.cli import main


def test_results_outside_the_repository_says_where_it_looked(tmp_path):
    runner = CliRunner()
    with runner.isolated_filesystem(temp_dir=tmp_path) as here:
        res = runner.invoke(main, ["results"])
        assert res.exit_code == 1
        assert f"looked for {os.path.join(here, 'runs', '*', '*.toml')} (no such directory)" \
            in res.output
        assert "--runs-dir" in res.output and "|---" not in res.output
        os.mkdir("empty")
        res = runner.invoke(main, ["results", "--runs-dir", "empty"])
        assert res.exit_code == 1 and "holds no recipes" in res.output
