"""`bioplaus sweep`: recipes x seeds x overrides as Ray tasks (see bioplaus.sweep)."""
from __future__ import annotations

import os
import sys

import click


class Display:
    """One line per run, redrawn on a terminal; printed when it changes elsewhere."""

    def __init__(self, runs, stream=None):
        self.runs = runs
        self.stream = stream or sys.stdout
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.shown = {}
        self.drawn = 0
        self.width = max(len(r.name) for r in runs)

    def line(self, run, info) -> str:
        st = info.get("state", "?")
        s = f"{run.name:<{self.width}}  {st:<11}"
        if info.get("epoch") is not None:
            ep = min(int(info["epoch"]), int(run.config["epochs"]))
            s += f" epoch {ep}/{run.config['epochs']}"
            if info.get("batches") and st == "running":
                s += f" batch {info.get('batch', 0)}/{info['batches']}"
        if info.get("test_error") is not None:
            on = "val" if run.config.get("val_size") else "test"  # val_size: a held-out split
            s += f"  {on} error {info['test_error']:.2f}%"
        if info.get("train_error") is not None and st == "running":
            s += f"  (train {info['train_error']:.2f}%)"
        if info.get("attempt", 1) > 1 and st not in ("finished", "skipped"):
            s += f"  attempt {info['attempt']}"
        if info.get("message") and st in ("failed", "diverged", "locked", "kept"):
            s += f"  {info['message']}"
        return s

    def update(self, infos: dict) -> None:
        lines = [self.line(r, infos.get(r.run_dir, {})) for r in self.runs]
        if self.tty:
            if self.drawn:
                self.stream.write(f"\x1b[{self.drawn}F")
            for ln in lines:
                self.stream.write("\x1b[2K" + ln + "\n")
            self.drawn = len(lines)
        else:
            for r, ln in zip(self.runs, lines):
                info = infos.get(r.run_dir, {})
                key = (info.get("state"), info.get("epoch"), info.get("attempt"))
                if self.shown.get(r.run_dir) != key:
                    self.shown[r.run_dir] = key
                    self.stream.write(ln + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        self.drawn = 0  # keep what is drawn; go on below it
        self.stream.write(text + "\n")
        self.stream.flush()



def render_rows(rows) -> str:
    """The final table; a run with ``val_size`` set was evaluated on its validation split."""
    w = max([len(r["run"]) for r in rows] + [3])
    splits = {r.get("split", "test") for r in rows}
    mixed = len(splits) > 1
    head = "error %" if mixed else f"{splits.pop()} error %"
    out = [f"{'run':<{w}}  {'state':<11} {'epochs':>9} {head:>13} {'wall':>8}"]
    for r in rows:
        err = "—" if r["test_error"] is None else f"{r['test_error']:.2f}"
        if mixed and r.get("split") == "val" and r["test_error"] is not None:
            err += " (val)"
        wall = "" if r["wall_s"] is None else f"{r['wall_s']:.0f}s"
        line = f"{r['run']:<{w}}  {r['state']:<11} {r['epochs']:>9} {err:>13} {wall:>8}"
        if r["message"] and r["state"] in ("failed", "diverged", "cancelled", "locked", "kept"):
            line += f"  {r['message']}"
        out.append(line)
    return "\n".join(out)




@click.command()
@click.argument("recipes", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--seeds", default=None,
              help="Seeds to run each recipe with: 0-4, 0,2,5 or 1,3-5. [each recipe's own seed]")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe option (a Config field: epochs=20, lr=1e-3, "
                   "lr_decay_milestones=10,15). A key given twice is an axis: one cell per value.")
@click.option("--out", "out_dir", default="out/sweep", show_default=True,
              type=click.Path(file_okay=False),
              help="Sweep directory: runs go to OUT/<recipe>/seed<k>/.")
@click.option("--address", default=None,
              help="Ray cluster to run on (e.g. 10.0.0.1:6379, or auto). [a local Ray on this machine]")
@click.option("--num-cpus", type=int, default=None,
              help="Local Ray only: CPUs it may use. [all cores]")
@click.option("--cpus-per-run", type=float, default=1.0, show_default=True,
              help="CPUs each run holds (also its BLAS threads).")
@click.option("--gpus-per-run", type=float, default=0.0, show_default=True,
              help="GPUs each run holds; fractions share a GPU (0.25: four runs per GPU). "
                   "Above 0 the runs train on the GPU.")
@click.option("--max-retries", type=int, default=3, show_default=True,
              help="Times Ray restarts a run whose worker or node died (it resumes from its checkpoint).")
@click.option("--checkpoint-every", type=float, default=300.0, show_default=True,
              help="Seconds between a run's mid-epoch checkpoints.")
@click.option("--dry-run", is_flag=True, help="List the runs and their states; start nothing.")
def sweep(recipes, seeds, sets, out_dir, address, num_cpus, cpus_per_run, gpus_per_run,
          max_retries, checkpoint_every, dry_run):
    """Run recipes x seeds on Ray, each run in its own resumable directory.

    A finished run directory is skipped, an unfinished one resumes from its
    checkpoint; Ray restarts runs whose worker died. Ctrl-C stops every run
    with a checkpoint written.

    Example: bioplaus sweep runs/fashion-mnist/mlp-pred.toml runs/fashion-mnist/mlp-sim.toml
    --seeds 0-4 --out out/fmnist
    """
    from bioplaus import sweep as sw
    from bioplaus.recipes import RecipeError
    from bioplaus.seeds import SeedError, parse_seeds

    try:
        seed_list = parse_seeds(seeds) if seeds is not None else None
        if cpus_per_run <= 0:
            raise sw.SweepError(f"--cpus-per-run must be > 0, got {cpus_per_run}")
        if gpus_per_run < 0 or (gpus_per_run > 1 and gpus_per_run != int(gpus_per_run)):
            raise sw.SweepError(f"--gpus-per-run must be a fraction of one GPU or a whole "
                                f"number of GPUs, got {gpus_per_run}")
        runs = sw.expand(recipes, seed_list, sw.parse_sets(sets), out_dir, gpus_per_run)
        if dry_run:
            for r in runs:
                click.echo(f"{r.name:<40} {sw.run_state(r.run_dir, r.config)[0]:<11} {r.run_dir}")
            return
        sw.require_ray()
    except (sw.SweepError, SeedError, RecipeError) as exc:
        raise click.ClickException(str(exc)) from None

    command = " ".join(["bioplaus", *sys.argv[1:]])
    click.echo(f"bioplaus sweep: {len(runs)} runs into {os.path.abspath(out_dir)}"
               + (f" on the Ray cluster at {address}" if address else " on a local Ray"))
    try:
        sw.start_ray(address, num_cpus=num_cpus)
        rows = sw.run_sweep(runs, cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run,
                            max_retries=max_retries, checkpoint_every_s=checkpoint_every,
                            command=command, display=Display(runs))
    except sw.SweepInterrupted as exc:
        click.echo("\n" + render_rows(exc.rows))
        click.echo(f"\n{exc}", err=True)
        sys.exit(130)
    except sw.SweepError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("\n" + render_rows(rows))
    cells = {r.cell for r in runs}
    agg = [a for a in sw.aggregate(out_dir) if a["cell"] in cells]
    click.echo("\n" + sw.render_aggregate(agg))
    if not all(r["finished"] for r in rows):
        sys.exit(1)
