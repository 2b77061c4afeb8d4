"""`bioplaus rules` and `bioplaus nets`: what can be trained, from the registries."""
from __future__ import annotations

import click

from bioplaus.net.spec import NETS, NetError, build_net
from bioplaus.rules.registry import RULES

# (channels, size, classes) per dataset, for parameter counts without loading data
DATASET_SHAPES = {
    "mnist": (1, 28, 10), "fashion-mnist": (1, 28, 10), "kmnist": (1, 28, 10),
    "cifar10": (3, 32, 10), "cifar100": (3, 32, 100), "svhn": (3, 32, 10), "stl10": (3, 96, 10),
}


@click.command()
@click.option("--family", type=click.Choice(["local", "global", "frc"]), default=None,
              help="Only rules of this family.")
def rules(family):
    """List every --rule with its one-line equation and its source."""
    width = max(len(n) for n in RULES)
    for r in RULES.values():
        if family and r.family != family:
            continue
        click.echo(f"{r.name:<{width}}  [{r.family}]  {r.summary}")
        click.echo(f"{'':<{width}}  source: {r.source}; page: rules/{r.name}.md")


@click.command()
@click.option("--dataset", type=click.Choice(sorted(DATASET_SHAPES)), default="fashion-mnist",
              show_default=True, help="Input shape and classes to count parameters for.")
@click.option("--num-layers", type=int, default=None, help="fc blocks (mlp: 3, vgg: 1).")
@click.option("--num-hidden", type=int, default=1024, show_default=True)
@click.option("--feat-mult", type=float, default=1.0, show_default=True)
def nets(dataset, num_layers, num_hidden, feat_mult):
    """List every --net with its blocks and parameter count for a dataset.

    The count is the forward net's (encoders, batch norms, output layer),
    what backprop trains; local heads come on top and depend on the rule.
    """
    c, s, k = DATASET_SHAPES[dataset]
    for name in NETS:
        try:
            spec = build_net(name, (c, s, s), k, num_layers=num_layers, num_hidden=num_hidden,
                             feat_mult=feat_mult)
        except NetError as exc:
            click.echo(f"{name:<10} n/a on {dataset}: {exc}")
            continue
        n = spec.encoder_param_count()
        shape = " ".join(
            (f"{b.n_out}{'M' if b.pool else ''}" if b.kind == "conv" else f"fc{b.n_out}")
            for b in spec.blocks)
        click.echo(f"{name:<10} {n / 1e6:7.2f}M params  {len(spec.blocks):2d} blocks: {shape}")
