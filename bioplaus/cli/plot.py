"""`bioplaus plot RUN`: error curves and the early-exit curve of a run."""
from __future__ import annotations

import click


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
def plot(run_dir):
    """Draw RUN_DIR/errors.png (per-layer train/test error per epoch) and
    RUN_DIR/exits.png (error against compute at every exit); and
    RUN_DIR/alignment.png (each layer's angle to the gradient) when the run
    was trained with --log-alignment."""
    from bioplaus.io import CheckpointError
    from bioplaus.plot import plot_run

    try:
        from bioplaus.plot_align import plot_alignment  # alignment.png, when the log has it

        for p in plot_run(run_dir) + plot_alignment(run_dir):
            click.echo(f"wrote {p}")
    except (RuntimeError, CheckpointError) as exc:
        raise click.ClickException(str(exc)) from None
