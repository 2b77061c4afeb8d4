"""`bioplaus plot RUN`: error curves and the early-exit curve of a run."""
from __future__ import annotations

import click


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
def plot(run_dir):
    """Draw RUN_DIR/errors.png (per-layer train/test error per epoch) and
    RUN_DIR/exits.png (error against compute at every exit)."""
    from bioplaus.io import CheckpointError
    from bioplaus.plot import plot_run

    try:
        for p in plot_run(run_dir):
            click.echo(f"wrote {p}")
    except (RuntimeError, CheckpointError) as exc:
        raise click.ClickException(str(exc)) from None
