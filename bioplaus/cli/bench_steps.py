"""``bioplaus bench steps``, ``traffic`` and ``profile``: whole steps, counted memory traffic, and
where a step's time goes.

Two click commands, attached to the ``bench`` group of :mod:`bioplaus.cli.bench`.
"""
from __future__ import annotations

import click

from bioplaus import backend
from bioplaus.net.spec import NETS
from bioplaus.rules.registry import RULES


def _names(value: str, known, what: str) -> tuple:
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = [v for v in names if v not in known]
    if not names or unknown:
        raise click.BadParameter(f"unknown {what} {', '.join(unknown) or '(none given)'}; "
                                 f"known: {', '.join(known)}")
    return names


@click.command("steps")
@click.option("--nets", default="mlp,vgg8b", show_default=True,
              help="comma-separated nets (mlp is 3x--num-hidden)")
@click.option("--rules", default="predsim,pred-bio,backprop", show_default=True,
              help="comma-separated rules; the PyTorch side has pred, sim, predsim, pred-bio, backprop")
@click.option("--batch-size", type=click.IntRange(min=2), default=128, show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="timed steps per (net, rule) and library; medians are printed "
                   "(a vgg8b step takes seconds on a CPU)")
@click.option("--device", type=click.Choice(backend.DEVICES), default="cpu", show_default=True,
              help="cpu: NumPy; gpu: CuPy (and PyTorch on CUDA when it has it)")
@click.option("--no-torch", is_flag=True, help="do not time the PyTorch formulation")
@click.option("--memory", is_flag=True,
              help="instead of timing, print peak step memory of the local --rules and backprop "
                   "on vgg8b vs vgg11b and mlp 3 vs 9 blocks (at --memory-batch)")
@click.option("--memory-batch", type=click.IntRange(min=2), default=32, show_default=True,
              help="batch of the --memory table (memory grows linearly with it)")
@click.option("--num-hidden", type=click.IntRange(min=1), default=1024, show_default=True)
@click.option("--feat-mult", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="multiplies VGG widths (small values for quick checks)")
@click.option("--dim-in-decoder", type=click.IntRange(min=1), default=4096, show_default=True)
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.0,
              show_default=True)
@click.option("--peak-size", type=click.IntRange(min=64), default=4096, show_default=True,
              help="side of the square float32 matmul that measures the peak")
@click.option("--tf32", is_flag=True, default=False,
              help="allow TF32 tensor-core products in both libraries (--device gpu only); "
                   "both strict float32 without it")
def steps(nets, rules, batch_size, repeats, device, no_torch, memory, memory_batch, num_hidden,
          feat_mult, dim_in_decoder, dropout, peak_size, tf32):
    """Whole training steps (forward, local updates, Adam) on 28x28x1 inputs.

    Prints per (net, rule) the median ms per step, images/s, the step's
    counted GFLOP and GFLOP/s against the float32 matmul peak of the same
    run, the memory of the step's arrays, and PyTorch's time for the same
    step with the ratio bioplaus / PyTorch.
    """
    net_names = _names(nets, NETS, "net")
    rule_names = _names(rules, tuple(RULES), "rule")
    try:
        if memory:
            from bioplaus.bench.memory import run_memory_bench

            if tf32:
                raise click.UsageError("--tf32 times steps; --memory measures memory, which "
                                       "TF32 does not change: give one of them")
            local = tuple(r for r in rule_names if RULES[r].family != "global")
            run_memory_bench(local or ("predsim",), batch=memory_batch, device=device,
                             out=click.echo, num_hidden=num_hidden, feat_mult=feat_mult,
                             dim_in_decoder=dim_in_decoder)
            return
        from bioplaus.bench.steps import run_steps_bench

        run_steps_bench(net_names, rule_names, batch=batch_size, repeats=repeats, device=device,
                        use_torch=not no_torch, out=click.echo, num_hidden=num_hidden,
                        feat_mult=feat_mult, dim_in_decoder=dim_in_decoder, dropout=dropout,
                        peak_size=peak_size, tf32=tf32)
    except backend.BackendError as exc:
        raise click.ClickException(str(exc)) from None


@click.command("traffic")
@click.option("--nets", default="mlp,vgg8b", show_default=True, help="comma-separated nets")
@click.option("--rules", default="backprop,predsim,pred-bio,frc-sym", show_default=True,
              help="comma-separated rules")
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True,
              help="examples per weight update (weights are read and written once per update)")
@click.option("--num-hidden", type=click.IntRange(min=1), default=1024, show_default=True)
@click.option("--dim-in-decoder", type=click.IntRange(min=1), default=4096, show_default=True)
@click.option("--per-layer/--totals", default=True, show_default=True,
              help="print the per-layer table or only each rule's totals")
def traffic(nets, rules, batch_size, num_hidden, dim_in_decoder, per_layer):
    """Counted memory traffic per example: activations buffered, weights read and written.

    The model of counting (Mostafa et al. 2018, Sec. 5) is explained in
    docs/traffic.md: 4 bytes per word; backprop buffers every layer's
    input and pre-activation until the backward pass returns to it, a local
    rule one layer's at a time.
    """
    from bioplaus.bench.traffic import run_traffic

    run_traffic(_names(nets, NETS, "net"), _names(rules, tuple(RULES), "rule"),
                batch=batch_size, num_hidden=num_hidden, dim_in_decoder=dim_in_decoder,
                per_layer=per_layer, out=click.echo)


@click.command("profile")
@click.option("--net", default="vgg8b", show_default=True, type=click.Choice(tuple(NETS)))
@click.option("--rule", default="predsim", show_default=True, type=click.Choice(tuple(RULES)))
@click.option("--batch-size", type=click.IntRange(min=2), default=128, show_default=True)
@click.option("--steps", "n_steps", type=click.IntRange(min=1), default=2, show_default=True,
              help="profiled steps (after one warm-up); times are per step")
@click.option("--device", type=click.Choice(backend.DEVICES), default="cpu", show_default=True)
@click.option("--num-hidden", type=click.IntRange(min=1), default=1024, show_default=True)
@click.option("--feat-mult", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="multiplies VGG widths (small values for quick checks)")
@click.option("--dim-in-decoder", type=click.IntRange(min=1), default=4096, show_default=True)
@click.option("--top", type=click.IntRange(min=1), default=25, show_default=True,
              help="ops listed (the rest are summed)")
def profile(net, rule, batch_size, n_steps, device, num_hidden, feat_mult, dim_in_decoder, top):
    """Where one training step's time goes: self time of every hand-written op.

    Each forward/backward op, loss and the optimizer step is timed (on a
    GPU with a synchronisation before and after), and the time between
    them is reported as the rest.
    """
    from bioplaus.bench.profile import run_profile

    try:
        run_profile(net, rule, batch=batch_size, steps=n_steps, device=device,
                    num_hidden=num_hidden, feat_mult=feat_mult, dim_in_decoder=dim_in_decoder,
                    top=top, out=click.echo)
    except backend.BackendError as exc:
        raise click.ClickException(str(exc)) from None


COMMANDS = (steps, traffic, profile)
