"""`bioplaus align`: each layer's update against the true gradient (bioplaus.align)."""
from __future__ import annotations

import json
import os

import click


def _errors():
    from bioplaus.cli.train import _errors as train_errors

    return train_errors() + (ValueError,)


def _from_checkpoint(path, device, data_dir):
    from bioplaus.io import load_checkpoint
    from bioplaus.net.restore import load_model_from_checkpoint

    model, data = load_model_from_checkpoint(path, device=device, data_dir=data_dir)
    ck_path = os.path.join(path, "checkpoint.h5") if os.path.isdir(path) else path
    ck = load_checkpoint(ck_path)
    return model, data, ck["epoch"], ck["batch"], ck["step"]


def _fresh(opts, device, data_dir):
    import numpy as np

    from bioplaus.cli.train import build_config
    from bioplaus import backend
    from bioplaus.net.model import build_model
    from bioplaus.data.train_data import TrainData

    over = {k: v for k, v in opts.items() if v is not None}
    over["device"] = device
    if data_dir is not None:
        over["data_dir"] = data_dir
    cfg = build_config(None, over)
    from bioplaus.config import validate
    from bioplaus.train import check_rule_options

    validate(cfg)
    check_rule_options(cfg)
    xp = backend.get_xp(device)
    dtype = np.float64 if cfg.dtype == "float64" else np.float32
    data = TrainData(cfg, xp, dtype)
    model = build_model(cfg, data.input_shape, data.num_classes, xp=xp, dtype=dtype)
    return model, data, 1, 0, 0


@click.command("align")
@click.argument("run", required=False, type=click.Path(exists=True))
@click.option("--rule", default=None, help="Without RUN: the rule of a freshly initialised net.")
@click.option("--net", default=None, help="Without RUN: the net. [vgg8b]")
@click.option("--seed", type=int, default=None, help="Without RUN: the initialisation seed. [1]")
@click.option("--dataset", default=None, help="Without RUN: the dataset. [fashion-mnist]")
@click.option("--num-layers", type=int, default=None, help="Without RUN: fully connected blocks.")
@click.option("--num-hidden", type=int, default=None, help="Without RUN: units per fc block.")
@click.option("--batch-size", type=int, default=None, help="Without RUN: batch size. [128]")
@click.option("--dropout", type=float, default=None, help="Without RUN: dropout. [0]")
@click.option("--batches", type=int, default=4, show_default=True,
              help="Average over this many training batches (the ones the run would see next).")
@click.option("--float32", "use_float32", is_flag=True,
              help="Compute in float32 instead of float64.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--device", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True)
@click.option("--data-dir", default=None, help="Dataset cache directory.")
def align(run, rule, net, seed, dataset, num_layers, num_hidden, batch_size, dropout, batches,
          use_float32, as_json, device, data_dir):
    """Angle between each layer's update and the backprop gradient of the output loss.

    RUN is a run directory or a checkpoint file; without it, give --rule (and
    --net, --seed) for a freshly initialised net. For every block's encoder and
    batch norm and the output layer: the angle (degrees) and norm ratio of the
    rule's update against the gradient of the output cross-entropy, by backprop
    through the whole net on the same parameters and batch, mean and std over
    --batches; and each fixed feedback matrix's angle to the one it replaces.
    The run's files are not modified.

    Examples: bioplaus align runs/x/mlp-fa --batches 8;
    bioplaus align --rule fa --net mlp --seed 1
    """
    import itertools

    import numpy as np

    from bioplaus.align import alignment, format_table

    fresh_opts = dict(rule=rule, net=net, seed=seed, dataset=dataset, num_layers=num_layers,
                      num_hidden=num_hidden, batch_size=batch_size, dropout=dropout)
    if batches < 1:
        raise click.UsageError(f"--batches must be >= 1, got {batches}")
    try:
        if run is not None:
            given = [f"--{k.replace('_', '-')}" for k, v in fresh_opts.items() if v is not None]
            if given:
                raise click.UsageError(f"{', '.join(given)} describe a fresh net; with RUN "
                                       f"({run}) the run's own configuration is used")
            model, data, epoch, batch, step = _from_checkpoint(run, device, data_dir)
        else:
            if rule is None:
                raise click.UsageError("give RUN (a run directory or checkpoint) or --rule R "
                                       "[--net N --seed S] for a freshly initialised net")
            model, data, epoch, batch, step = _fresh(fresh_opts, device, data_dir)
        it = itertools.islice(data.train_batches(epoch, batch), batches)
        if batch + batches > data.batches_per_epoch:  # the rest from the next epoch
            it = itertools.chain(it, itertools.islice(data.train_batches(epoch + 1, 0),
                                                      batches - (data.batches_per_epoch - batch)))
        res = alignment(model, it, dtype=np.float32 if use_float32 else np.float64,
                        first_step=step)
    except _errors() as exc:
        raise click.ClickException(str(exc)) from None
    res["source"] = run if run is not None else "fresh initialisation"
    res["step"] = step
    if as_json:
        click.echo(json.dumps(res, indent=1))
    else:
        click.echo(f"{res['source']} (step {step})")
        click.echo(format_table(res))
