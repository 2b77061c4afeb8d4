"""``bioplaus bench``: throughput benchmarks."""
import click

from bioplaus import backend


@click.group("bench")
def bench():
    """Benchmarks: achieved GFLOP/s against this machine's matmul peak."""


@bench.command("ops")
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True,
              help="timed samples per measurement (medians are reported)")
@click.option("--device", type=click.Choice(backend.DEVICES), default="cpu", show_default=True,
              help="cpu: NumPy; gpu: CuPy")
@click.option("--batch", type=click.IntRange(min=1), default=128, show_default=True)
def ops_cmd(repeats, device, batch):
    """Linear (mlp 3x1024) and conv2d (vgg8b) forward+backward on 28x28 inputs."""
    from bioplaus.bench.ops import run_ops_bench

    try:
        run_ops_bench(repeats=repeats, out=click.echo, device=device, batch=batch)
    except backend.BackendError as exc:
        raise click.ClickException(str(exc)) from None
