"""`bioplaus results`: the paper-vs-bioplaus table generated from runs/."""
from __future__ import annotations

import click


@click.command()
@click.option("--runs-dir", default="runs", show_default=True, type=click.Path(file_okay=False))
@click.option("--write", "readme", default=None, type=click.Path(dir_okay=False),
              help="Replace the table between the results markers of this file (README.md).")
@click.option("--sweep", "sweep_dirs", multiple=True, type=click.Path(file_okay=False),
              help="A `bioplaus sweep` directory: mean ± std and n of the final test error per cell.")
def results(runs_dir, readme, sweep_dirs):
    """Print (or write into the README) the results table of every recipe."""
    if sweep_dirs:
        from bioplaus.sweep import sweep_results_cli
        return sweep_results_cli(sweep_dirs, click)
    from bioplaus.recipes import RecipeError
    from bioplaus.results import collect, render_table, update_readme

    import os

    try:
        rows = collect(runs_dir)
        if not rows:
            pattern = os.path.join(os.path.abspath(runs_dir), "*", "*.toml")
            hint = ("no such directory" if not os.path.isdir(runs_dir)
                    else "the directory holds no recipes")
            raise click.ClickException(
                f"no recipes found: looked for {pattern} ({hint}). Run `bioplaus results` "
                "from the repository root, or pass --runs-dir DIR (the folder holding "
                "<dataset>/<net>-<rule>.toml)")
        table = render_table(rows)
    except RecipeError as exc:
        raise click.ClickException(str(exc)) from None
    if readme is None:
        click.echo(table)
        return
    with open(readme) as f:
        text = f.read()
    try:
        text = update_readme(text, table)
    except ValueError as exc:
        raise click.ClickException(f"{readme}: {exc}") from None
    with open(readme, "w") as f:
        f.write(text)
    click.echo(f"wrote the results table ({table.count(chr(10)) - 1} rows) into {readme}")
