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


@bench.command("pipeline")
@click.option("--stages", type=click.IntRange(min=2), default=2, show_default=True,
              help="stages of the pipelined layout")
@click.option("--cores", type=click.IntRange(min=1), default=2, show_default=True,
              help="cores of the sequential process; each stage gets cores/stages")
@click.option("--rule", default="predsim", show_default=True, help="a local or frc-* rule")
@click.option("--batch", type=click.IntRange(min=2), default=128, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=20, show_default=True,
              help="timed steps per layout")
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True)
@click.option("--device", type=click.Choice(backend.DEVICES), default="cpu", show_default=True,
              help="gpu: one GPU per stage (or a share of one)")
@click.option("--address", default=None, help="a Ray cluster [a local Ray with --cores CPUs]")
@click.option("--quick", is_flag=True, help="tiny widths, 3 steps: checks that it runs")
def pipeline_cmd(stages, cores, rule, batch, steps, warmup, device, address, quick):
    """Images/s of mlp 3x1024 and vgg8b: 1 process x C cores against N stages x C/N cores.

    Also each stage's busy fraction, the bubble and the bytes sent between
    stages per step (see bioplaus/bench/pipeline.py, docs/pipeline.md).
    """
    from bioplaus.bench.pipeline import run_pipeline_bench
    from bioplaus.config import Config
    from bioplaus.pipeline.actors import require_ray
    from bioplaus.pipeline.split import PipelineError
    from bioplaus.pipeline.trainer import check_pipelinable
    from bioplaus.rules.registry import RuleError
    from bioplaus.sweep import start_ray

    try:
        check_pipelinable(Config(rule=rule))
        require_ray()
        start_ray(address, num_cpus=None if address else cores)
        run_pipeline_bench(stages=stages, cores=cores, rule=rule, batch=batch, steps=steps,
                           warmup=warmup, device=device, quick=quick, out=click.echo)
    except (PipelineError, RuleError, backend.BackendError) as exc:
        raise click.ClickException(str(exc)) from None
