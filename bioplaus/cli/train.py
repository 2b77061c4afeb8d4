"""`bioplaus train` and `bioplaus eval`."""
from __future__ import annotations

import os
import sys

import click

from bioplaus.config import Config, ConfigError
from bioplaus.recipes import RecipeError, load_recipe

# option name -> (Config field, type, help)
_OPTS = [
    ("--rule", "rule", str, "Learning rule (see `bioplaus rules`). [predsim]"),
    ("--net", "net", str, "Network (see `bioplaus nets`). [vgg8b]"),
    ("--dataset", "dataset", str, "mnist, fashion-mnist, kmnist, cifar10, cifar100, svhn, stl10. [fashion-mnist]"),
    ("--num-layers", "num_layers", int, "Fully connected blocks (mlp: 3, vgg: 1)."),
    ("--num-hidden", "num_hidden", int, "Units per fully connected block. [1024]"),
    ("--feat-mult", "feat_mult", float, "Multiply conv widths by this. [1]"),
    ("--nonlin", "nonlin", str, "relu, leakyrelu or tanh. [relu]"),
    ("--init", "init", str, "Weight initialisation: torch (U(+-1/sqrt(fan_in))) or xavier-uniform (biases 0). [torch]"),
    ("--dropout", "dropout", float, "Dropout after each nonlinearity (Dropout2d for conv). [0]"),
    ("--dim-in-decoder", "dim_in_decoder", int, "Max input size of the local decoder (pred, predsim, -bio). [4096]"),
    ("--beta", "beta", float, "Weight of sim in predsim(-bio). [0.99]"),
    ("--target-proj-size", "target_proj_size", int, "Size of the label projection P (-bio). [128]"),
    ("--frc-loss", "frc_loss", str, "frc-* local loss: ce or hinge. [ce]"),
    ("--layerwise-epochs", "layerwise_epochs", int, "Train one block after another, this many epochs each (local and frc-* rules). [0: all at once]"),
    ("--batch-size", "batch_size", int, "[128]"),
    ("--epochs", "epochs", int, "[400]"),
    ("--lr", "lr", float, "Initial learning rate. [5e-4]"),
    ("--lr-decay-fact", "lr_decay_fact", float, "Learning-rate factor at each milestone. [0.25]"),
    ("--optim", "optim", str, "adam, amsgrad or sgd. [adam]"),
    ("--momentum", "momentum", float, "SGD momentum. [0]"),
    ("--weight-decay", "weight_decay", float, "[0]"),
    ("--classes-per-batch", "classes_per_batch", int, "Aim for this many classes per batch (0: random). [0]"),
    ("--classes-per-batch-until-epoch", "classes_per_batch_until_epoch", int, "Use that sampler until this epoch (0: always). [0]"),
    ("--length", "length", int, "Cutout hole side in pixels. [16]"),
    ("--val-size", "val_size", int, "Hold this many training examples out and evaluate on them instead of the test set. [0]"),
    ("--train-subset", "train_subset", int, "Train on a seeded random subset of this size (smoke runs). [all]"),
    ("--test-subset", "test_subset", int, "Evaluate on a seeded random subset of this size. [all]"),
    ("--max-steps", "max_steps", int, "Stop after this many training steps in all (smoke runs). [no limit]"),
    ("--input-size", "input_size", int, "Bring inputs to this square size (lenet: 32). [0: as stored]"),
    ("--input-fit", "input_fit", str, "How --input-size is reached: resize (bilinear) or pad (zeros). [resize]"),
    ("--data-dir", "data_dir", str, "Dataset cache directory (also $BIOPLAUS_DATA)."),
    ("--seed", "seed", int, "[1]"),
    ("--device", "device", str, "cpu (NumPy) or gpu (CuPy). [cpu]"),
]


def _add_options(f):
    for opt, _, typ, help_ in reversed(_OPTS):
        f = click.option(opt, type=typ, default=None, help=help_)(f)
    f = click.option("--lr-decay-milestones", type=str, default=None,
                     help="Comma-separated epochs where the lr decays. [200,300,350,375]")(f)
    f = click.option("--cutout/--no-cutout", default=None, help="Cutout regularisation.")(f)
    f = click.option("--reference", is_flag=True, default=False,
                     help="Run the reference ops end to end (the equations as written; the same "
                          "results as the default fast path, slower).")(f)
    f = click.option("--tf32", is_flag=True, default=False,
                     help="Allow TF32 tensor-core products for float32 on the GPU (--device gpu "
                          "only; faster, about 3 decimal digits per product). Off: strict "
                          "float32. Stated in train.log and the run's configuration.")(f)
    return f


def build_config(recipe, overrides: dict) -> Config:
    base = load_recipe(recipe).config if recipe else {}
    d = dict(base)
    for _, field, _, _ in _OPTS:
        if overrides.get(field) is not None:
            d[field] = overrides[field]
    if overrides.get("lr_decay_milestones") is not None:
        txt = overrides["lr_decay_milestones"].strip()
        try:
            d["lr_decay_milestones"] = tuple(int(t) for t in txt.split(",") if t.strip())
        except ValueError:
            raise ConfigError(f"--lr-decay-milestones must be comma-separated integers, got {txt!r}") from None
    if overrides.get("cutout") is not None:
        d["cutout"] = overrides["cutout"]
    if overrides.get("reference"):
        d["reference"] = True
    if overrides.get("tf32"):
        d["tf32"] = True
    return Config.from_dict(d)


def _errors():
    from bioplaus.backend import BackendError
    from bioplaus.data.registry import DataError
    from bioplaus.io import CheckpointError
    from bioplaus.net.spec import NetError
    from bioplaus.rules.registry import RuleError

    return (ConfigError, RecipeError, BackendError, DataError, CheckpointError, NetError, RuleError)


@click.command()
@click.option("--recipe", type=click.Path(dir_okay=False), default=None,
              help="A recipe file (runs/*.toml): its options are the defaults, options given here override them.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Run directory for checkpoint.h5, log.h5, train.log. [out/<dataset>-<net>-<rule>]")
@click.option("--resume", is_flag=True,
              help="Continue the run in --out from its checkpoint, with its configuration "
                   "(options given here must agree with it; --epochs, --max-steps, --device "
                   "and --data-dir may change).")
@click.option("--overwrite", is_flag=True,
              help="Replace a run already in --out (its log, checkpoint and figures are deleted).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--checkpoint-every", type=float, default=300.0, show_default=True,
              help="Seconds between mid-epoch checkpoints.")
@click.option("--log-alignment", type=click.IntRange(min=0), default=0, metavar="N",
              help="Every N steps, record each layer's angle to the backprop gradient "
                   "into log.h5 (see `bioplaus align`, docs/alignment.md). [0: off]")
@click.option("--pipeline", type=click.IntRange(min=1), default=None, metavar="N",
              help="Split the net's blocks into N stages, each a Ray actor on its own cores "
                   "(or GPU with --device gpu), trained batch after batch in a pipeline; local "
                   "and frc-* rules only; the same results as without (docs/pipeline.md).")
@click.option("--address", default=None, metavar="ADDR",
              help="With --pipeline: the Ray cluster to run the stages on (`ray start --head` "
                   "prints it). [a local Ray on this machine]")
@click.option("--stage-cpus", type=float, default=None, metavar="C",
              help="With --pipeline: CPUs (and BLAS threads) per stage. [the CPUs shared out]")
@_add_options
def train(recipe, out_dir, resume, overwrite, no_progress, checkpoint_every, log_alignment,
          pipeline, address, stage_cpus, **opts):
    """Train a net with a learning rule.

    Example: bioplaus train --rule pred-bio --net vgg8b --dataset fashion-mnist
    """
    from bioplaus.cli.resume import explicit_options, guard_new_run, resume_config
    from bioplaus.progress import hms
    from bioplaus.rules.registry import RULES
    from bioplaus.pipeline import PipelineError
    from bioplaus.train import Interrupted, Trainer, TrainingDiverged

    if (address or stage_cpus is not None) and not pipeline:
        raise click.UsageError("--address and --stage-cpus apply only with --pipeline N")
    if resume and overwrite:
        raise click.UsageError("--resume continues the run in --out, --overwrite replaces it: "
                               "give one of them")
    try:
        cfg = build_config(recipe, opts)
        out_dir = out_dir or os.path.join("out", f"{cfg.dataset}-{cfg.net}-{cfg.rule}")
        if resume:
            fields = [f for _, f, _, _ in _OPTS] + ["lr_decay_milestones", "cutout", "tf32"]
            explicit = explicit_options(click.get_current_context(), fields)
            if recipe:
                explicit |= set(load_recipe(recipe).config)
            cfg = resume_config(out_dir, cfg.to_dict(), explicit)
        if cfg.rule not in RULES:
            raise ConfigError(f"unknown rule {cfg.rule!r}; known rules: {', '.join(RULES)}")
        if not resume:
            guard_new_run(out_dir, overwrite)
        kw = dict(resume=resume, log=click.echo, progress=not no_progress,
                  checkpoint_every_s=checkpoint_every,
                  command=" ".join(["bioplaus", *sys.argv[1:]]), log_alignment=log_alignment)
        if pipeline:
            trainer = _pipeline_trainer(cfg, out_dir, pipeline, address, stage_cpus, kw)
        else:
            trainer = Trainer(cfg, out_dir, **kw)
        click.echo(f"bioplaus train: {cfg.rule} on {cfg.net} ({trainer.model.param_count():,} "
                   f"trained parameters incl. local heads), {cfg.dataset}, device {cfg.device}, "
                   f"{trainer.model.k.name} kernels, {trainer.precision}, out {out_dir}")
        if cfg.max_steps:
            n_eval = len(trainer.data.eval_split_data.labels)
            split = trainer.data.eval_split
            click.echo(f"--max-steps {cfg.max_steps}: stops after step {cfg.max_steps}, then "
                       f"evaluates on the {split} set: {n_eval:,} examples"
                       + ("" if cfg.test_subset or split == "val" else
                          " (all of it; --test-subset N evaluates a seeded subset of N)"))
        rec = trainer.run()
    except _errors() + (PipelineError,) as exc:
        raise click.ClickException(str(exc)) from None
    except TrainingDiverged as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(3)
    except Interrupted as exc:
        click.echo(f"\n{exc}", err=True)
        sys.exit(130)
    if rec:
        click.echo(f"final {rec['eval_split']} error: {rec['test_error']:.2f}% "
                   f"(epoch {rec['epoch']}, {rec['steps']} steps, wall {hms(rec['wall_s'])})")


def _pipeline_trainer(cfg, out_dir, stages, address, stage_cpus, kw):
    """The --pipeline trainer: checked, Ray started (or joined at ``address``), split printed."""
    from bioplaus.pipeline.actors import require_ray
    from bioplaus.pipeline.trainer import PipelineTrainer, check_pipelinable
    from bioplaus.sweep import start_ray

    check_pipelinable(cfg, kw["log_alignment"])
    require_ray()
    trainer = PipelineTrainer(cfg, out_dir, stages=stages, cpus_per_stage=stage_cpus, **kw)
    try:
        start_ray(address)
    except BaseException:
        trainer._lock.release()
        raise
    click.echo(trainer.split_description())
    return trainer


@click.command("eval")
@click.argument("checkpoint", type=click.Path(dir_okay=True))
@click.option("--device", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True)
@click.option("--data-dir", default=None, help="Dataset cache directory.")
def eval_cmd(checkpoint, device, data_dir):
    """Evaluate a checkpoint: the early-exit table (error and MACs at every exit)."""
    from bioplaus.evaluate import evaluate, exit_table
    from bioplaus.net.restore import load_model_from_checkpoint
    from bioplaus.progress import wrap

    try:
        model, data = load_model_from_checkpoint(checkpoint, device=device, data_dir=data_dir)
        batches = wrap(data.eval_batches(), len(data.eval_loader),
                       f"evaluating ({data.eval_split} set)", unit="batch")
        res = evaluate(model, batches, data.eval_split)
    except _errors() as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        click.echo("\ninterrupted: the evaluation was stopped, nothing was written", err=True)
        sys.exit(130)
    cfg = model.cfg
    click.echo(f"{cfg.rule} on {cfg.net}, {cfg.dataset} {res['split']} set ({res['examples']} examples)")
    click.echo(f"{'exit':<36} {'error %':>8} {'MMACs/example':>14}")
    for row in exit_table(model, res):
        click.echo(f"{row['exit']:<36} {row['error']:8.2f} {row['macs'] / 1e6:14.2f}")
