"""`bioplaus oracle`: write one step's exact updates to HDF5, or compare two files."""
from __future__ import annotations

import sys

import click


class _OracleGroup(click.Group):
    """`bioplaus oracle --rule ...` writes a file; `bioplaus oracle check A B` compares."""

    def parse_args(self, ctx, args):
        # The sub-commands by name, the group's own --help, and a word that is
        # no option go to click (which lists the commands, or suggests one);
        # anything else is the options of `write`.
        if not args or args[0] in self.commands or args[0] in ("-h", "--help") \
                or not args[0].startswith("-"):
            return super().parse_args(ctx, args)
        return super().parse_args(ctx, ["write", *args])

    def resolve_command(self, ctx, args):
        name = args[0] if args else ""
        if name and name not in self.commands and not name.startswith("-"):
            import difflib

            close = difflib.get_close_matches(name, list(self.commands), n=1, cutoff=0.5)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            ctx.fail(f"no such oracle command {name!r}.{hint} Commands: "
                     f"{', '.join(sorted(self.commands))} (options without a command: write)")
        return super().resolve_command(ctx, args)


@click.group(cls=_OracleGroup, invoke_without_command=False)
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
@click.option("--input-size", type=int, default=0,
              help="Bring inputs to this square size (lenet: 32). [0: as stored; lenet: 32]")
@click.option("--input-fit", default="resize", show_default=True, help="resize or pad.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False))
def write(rule, net, dataset, seed, batch_size, num_layers, num_hidden, feat_mult, dim_in_decoder,
          beta, nonlin, data_dir, input_size, input_fit, out_path):
    """Write one float64 step (dropout off) of RULE on NET to --out."""
    import numpy as np

    from bioplaus.config import Config, ConfigError, validate
    from bioplaus.data.loaders import load_dataset
    from bioplaus.data.pipeline import make_loader
    from bioplaus.data.registry import DataError
    from bioplaus.io import save_oracle
    from bioplaus.data.fit import fit_split
    from bioplaus.net.spec import LENET_INPUT, NetError
    from bioplaus.oracle import compute_oracle, oracle_attrs
    from bioplaus.rules.registry import RuleError, get_rule

    try:
        get_rule(rule)
        cfg = Config(rule=rule, net=net, dataset=dataset, seed=seed, batch_size=batch_size,
                     num_layers=num_layers, num_hidden=num_hidden, feat_mult=feat_mult,
                     dim_in_decoder=dim_in_decoder, beta=beta, nonlin=nonlin, data_dir=data_dir,
                     input_size=input_size or (LENET_INPUT if net == "lenet" else 0),
                     input_fit=input_fit)
        validate(cfg)
        split = fit_split(load_dataset(dataset, "train", data_dir), cfg.input_size, cfg.input_fit)
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


# What makes two oracle files the same step: the attributes first, then every
# option of the configuration recorded in the file.
_SAME = ("rule", "net", "dataset", "seed", "batch_size", "steps")


def attribute_differences(a: dict, b: dict) -> list[str]:
    """``name: x vs y`` for every attribute or recorded option that differs."""
    import json

    out = []
    for k in _SAME:
        if a.get(k) != b.get(k):
            out.append(f"{k} {a.get(k)!r} vs {b.get(k)!r}")
    try:
        ca, cb = json.loads(a.get("config", "{}")), json.loads(b.get("config", "{}"))
    except (TypeError, ValueError):
        ca, cb = {}, {}
    for k in sorted(set(ca) | set(cb)):
        if k in _SAME or k in ("data_dir", "device"):
            continue
        if ca.get(k) != cb.get(k):
            out.append(f"{k} {ca.get(k)!r} vs {cb.get(k)!r}")
    return out


@oracle.command("check")
@click.argument("a", type=click.Path(exists=True, dir_okay=False))
@click.argument("b", type=click.Path(exists=True, dir_okay=False))
@click.option("--tol", type=float, default=1e-6, show_default=True,
              help="Largest relative error accepted per parameter (relative to the largest "
                   "gradient of its layer).")
def check(a, b, tol):
    """Print the largest relative error per parameter; exit 1 above --tol.

    Files of different steps (another net, rule, dataset, seed, batch size or
    option) are refused with one message naming what differs (exit 2).
    """
    from bioplaus.io import CheckpointError, load_oracle
    from bioplaus.oracle import compare

    try:
        fa, fb = load_oracle(a), load_oracle(b)
    except CheckpointError as exc:
        raise click.ClickException(str(exc)) from None
    diff = attribute_differences(fa["attrs"], fb["attrs"])
    if diff:
        click.echo(f"Error: {a} and {b} are not the same step, so their updates cannot be "
                   f"compared: {'; '.join(diff)}. Write both with the same options "
                   "(`bioplaus oracle --help`).", err=True)
        sys.exit(2)
    rows = compare(fa, fb)
    width = max([len(n) for n, _ in rows] + [9])
    bad = 0
    for name, err in rows:
        flag = "" if err <= tol else "  > tol"
        bad += bool(flag)
        click.echo(f"{name:<{width}}  {err:.3e}{flag}")
    click.echo(f"{len(rows)} parameters, {bad} above tol {tol:g}")
    sys.exit(1 if bad else 0)
