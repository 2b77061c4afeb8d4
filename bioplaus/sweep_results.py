"""A sweep's results over seeds: the mean, standard deviation and count of the
final test error per cell (``bioplaus results``), read from the cells'
``cell.json`` and the runs' ``progress.json``. (:mod:`bioplaus.sweep` exports
these functions; they import its names when called, as it imports them.)"""
from __future__ import annotations

import glob
import math
import os

from bioplaus.sweep_task import PROGRESS, _read_json, run_state


def _mean_std(xs):
    n = len(xs)
    if not n:
        return None, None
    mean = sum(xs) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else None
    return mean, std


def aggregate(sweep_dir: str) -> list[dict]:
    """One row per cell of a sweep directory: the final test error's mean, sample
    standard deviation and count over the cell's finished runs, and the paper's number."""
    from bioplaus.sweep import CELL, SweepError

    rows = []
    cells = sorted(glob.glob(os.path.join(sweep_dir, "*", CELL)))
    if not cells:
        raise SweepError(f"{sweep_dir}: no sweep cells here (no */{CELL}); give the --out "
                         "directory of a `bioplaus sweep`")
    for path in cells:
        doc = _read_json(path)
        if doc is None:
            raise SweepError(f"{path}: not a readable cell file")
        cell_dir = os.path.dirname(path)
        cfg = doc["config"]
        seeds = []
        for run_dir in sorted(glob.glob(os.path.join(cell_dir, "seed*")),
                              key=lambda p: (len(p), p)):
            state, ck = run_state(run_dir, cfg)
            err = None
            if state == "finished":
                prog = _read_json(os.path.join(run_dir, PROGRESS)) or {}
                rec = prog.get("record") if prog.get("state") == "finished" else None
                if rec is None and ck["history"]:
                    rec = ck["history"][-1]
                err = None if rec is None else rec["test_error"]
            seeds.append({"run_dir": run_dir, "seed": os.path.basename(run_dir)[4:],
                          "state": state, "test_error": err})
        errs = [s["test_error"] for s in seeds if s["test_error"] is not None]
        mean, std = _mean_std(errs)
        rows.append({"cell": doc["cell"], "recipe": doc["recipe"], "cell_dir": cell_dir,
                     "dataset": cfg["dataset"], "net": cfg["net"], "rule": cfg["rule"],
                     "paper": (doc.get("paper") or {}).get("error"), "n": len(errs),
                     "split": "val" if cfg.get("val_size") else "test",
                     "runs": len(seeds), "mean": mean, "std": std, "seeds": seeds})
    return rows


def render_aggregate(rows, link_base: str | None = None) -> str:
    """The Markdown table of :func:`aggregate`'s rows; each seed links to its train.log."""
    out = ["| cell | dataset | net | rule | paper test error % | bioplaus test error % "
           "(mean ± std) | n | runs |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        paper = "—" if r["paper"] is None else f"{r['paper']:.2f}"
        if r["mean"] is None:
            ours = "no finished run"
        elif r["std"] is None:
            ours = f"{r['mean']:.2f}"
        else:
            ours = f"{r['mean']:.2f} ± {r['std']:.2f}"
        if r["mean"] is not None and r.get("split") == "val":
            ours += " (validation)"  # val_size: evaluated on examples held out of the training set
        links = []
        for s in r["seeds"]:
            target = os.path.join(s["run_dir"], "train.log")
            if link_base is not None:
                target = os.path.relpath(target, link_base)
            label = f"seed {s['seed']}"
            label += f": {s['test_error']:.2f}" if s["test_error"] is not None else f" ({s['state']})"
            links.append(f"[{label}]({target})")
        n = f"{r['n']}" + (f" of {r['runs']}" if r["runs"] != r["n"] else "")
        out.append(f"| {r['cell']} | {r['dataset']} | {r['net']} | {r['rule']} | {paper} | "
                   f"{ours} | {n} | {', '.join(links)} |")
    return "\n".join(out)


def sweep_results_cli(sweep_dirs, click) -> None:
    """``bioplaus results --sweep DIR...``: print :func:`render_aggregate` for each directory."""
    from bioplaus.sweep import SweepError

    for d in sweep_dirs:
        try:
            rows = aggregate(d)
        except SweepError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(render_aggregate(rows))
