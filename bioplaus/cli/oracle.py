"""`bioplaus oracle`: write one step's exact updates to HDF5, or compare two files."""
from __future__ import annotations

import sys

import click


class _OracleGroup(click.Group):
    """`bioplaus oracle --rule ...` writes a file; `bioplaus oracle check A B` compares."""

    def parse_args(self, ctx, args):
        if args and args[0] in self.commands:
            return super().parse_args(ctx, args)
        return super().parse_args(ctx, ["write", *args])


@click.group(cls=_OracleGroup)
def oracle():
    """The gradient oracle (see docs/oracle.md for the file layout).

    \b
    bioplaus oracle --rule R --net N --seed S --batch-size B --out FILE.h5
    bioplaus oracle check A.h5 B.h5 [--tol 1e-6]
    """


@oracle.command("write")
@click.option("--rule", default="predsim", show_default=True)
@click.option("--net", default="mlp", show_default=True)
@click.option("--dataset", default="fashion-mnist", show_default=True,
              help="The input batch is the first --batch-size training examples (no augmentation).")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--num-layers", type=int, default=None)
@click.option("--num-hidden", type=int, default=1024, show_default=True)
@click.option("--feat-mult", type=float, default=1.0, show_default=True)
@click.option("--dim-in-decoder", type=int, default=4096, show_default=True)
@click.option("--beta", type=float, default=0.99, show_default=True)
@click.option("--nonlin", default="relu", show_default=True)
@click.option("--data-dir", default=None)
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False))
def write(rule, net, dataset, seed, batch_size, num_layers, num_hidden, feat_mult, dim_in_decoder,
          beta, nonlin, data_dir, out_path):
    """Write one float64 step (dropout off) of RULE on NET to --out."""
    import numpy as np

    from bioplaus.config import Config, ConfigError, validate
    from bioplaus.data.loaders import load_dataset
    from bioplaus.data.pipeline import make_loader
    from bioplaus.data.registry import DataError
    from bioplaus.io import save_oracle
    from bioplaus.net.spec import NetError
    from bioplaus.oracle import compute_oracle, oracle_attrs
    from bioplaus.rules.registry import RuleError, get_rule

    try:
        get_rule(rule)
        cfg = Config(rule=rule, net=net, dataset=dataset, seed=seed, batch_size=batch_size,
                     num_layers=num_layers, num_hidden=num_hidden, feat_mult=feat_mult,
                     dim_in_decoder=dim_in_decoder, beta=beta, nonlin=nonlin, data_dir=data_dir)
        validate(cfg)
        split = load_dataset(dataset, "train", data_dir)
        loader = make_loader(split, batch_size, train=False)
        x, y = next(iter(loader(1, 0)))
        res = compute_oracle(cfg, np.asarray(x, np.float64), y, int(split.labels.max()) + 1)
    except (ConfigError, DataError, NetError, RuleError) as exc:
        raise click.ClickException(str(exc)) from None
    save_oracle(out_path, attrs=oracle_attrs(cfg, res),
                arrays={"input": {"x": res["x"], "y": res["y"]}, "params": res["params"],
                        "buffers": res["buffers"], "fixed": res["fixed"], "grads": res["grads"]})
    click.echo(f"wrote {out_path}: {rule} on {net}, {len(res['grads'])} gradients, "
               f"{len(res['fixed'])} fixed matrices, batch {res['x'].shape[0]}")


@oracle.command("check")
@click.argument("a", type=click.Path(exists=True, dir_okay=False))
@click.argument("b", type=click.Path(exists=True, dir_okay=False))
@click.option("--tol", type=float, default=1e-6, show_default=True,
              help="Largest relative error accepted per parameter.")
def check(a, b, tol):
    """Print the largest relative error per parameter; exit 1 above --tol."""
    from bioplaus.io import CheckpointError, load_oracle
    from bioplaus.oracle import compare

    try:
        fa, fb = load_oracle(a), load_oracle(b)
    except CheckpointError as exc:
        raise click.ClickException(str(exc)) from None
    rows = compare(fa, fb)
    width = max([len(n) for n, _ in rows] + [9])
    bad = 0
    for name, err in rows:
        flag = "" if err <= tol else "  > tol"
        bad += bool(flag)
        click.echo(f"{name:<{width}}  {err:.3e}{flag}")
    click.echo(f"{len(rows)} parameters, {bad} above tol {tol:g}")
    sys.exit(1 if bad else 0)
