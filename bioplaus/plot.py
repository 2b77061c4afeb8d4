"""Figures of a recorded run (matplotlib, the optional `plot` extra).

* ``errors.png``: per-layer training and test error against the epoch, each
  block's local classifier and the output layer (like Nøkland & Eidnes 2019,
  Fig. 2);
* ``exits.png``: the early-exit curve of the last epoch, test error against
  the multiply-accumulates spent to reach each exit (Mostafa et al. 2018).

Made to be printed: errors in percent with plain tick labels (``5%``, ``10%``,
never ``2.6x10^1``), whole epochs on the x axis, legends outside the data, the
output layer drawn dashed so that the last block's curve under it stays
visible, and exits told apart by marker and legend instead of text labels that
collide. A run without a finished epoch plots what it has: the record of a
``--max-steps`` run's last, partial epoch (in ``log.h5``), or else the
training error of the examples seen so far (from ``checkpoint.h5``).
"""
from __future__ import annotations

import os

import numpy as np

from bioplaus.config import Config
from bioplaus.io import load_checkpoint, load_log

# Tick values for error axes, in percent.
_NICE = (0.1, 0.2, 0.5, 1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100)


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("bioplaus plot needs matplotlib: pip install 'bioplaus[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def percent_axis(ax, values) -> None:
    """Error axis in percent: log scale with plain labels where the errors span
    more than a factor of 4, else linear; no minor-tick labels."""
    from matplotlib import ticker

    v = np.asarray([x for x in values if x is not None and np.isfinite(x) and x > 0], float)
    fmt = ticker.FuncFormatter(lambda x, _: f"{x:g}%")
    if v.size and v.max() / v.min() > 4:
        lo, hi = v.min() / 1.15, min(v.max() * 1.15, 100.0)
        ax.set_yscale("log")
        ax.set_ylim(lo, hi)
        ticks = [t for t in _NICE if lo <= t <= hi]
        ax.yaxis.set_major_locator(ticker.FixedLocator(ticks))
        ax.yaxis.set_minor_locator(ticker.NullLocator())
    else:
        ax.yaxis.set_major_locator(ticker.MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]))
    ax.yaxis.set_major_formatter(fmt)
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())


def epoch_axis(ax, epochs) -> None:
    """Whole epochs only (a 2-epoch run has ticks 1 and 2, not 1.2 and 1.4)."""
    from matplotlib import ticker

    lo, hi = int(min(epochs)), int(max(epochs))
    if hi - lo < 2:
        ax.set_xlim(lo - 0.5, hi + 0.5)
        ax.xaxis.set_major_locator(ticker.FixedLocator(list(range(lo, hi + 1))))
    else:
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True, min_n_ticks=2))
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.set_xlabel("epoch")


def exit_points(cfg: Config, record: dict) -> list[tuple[str, float, float]]:
    """(label, MMACs per example, test error %) for every exit of the last record."""
    from bioplaus.data.registry import get_info
    from bioplaus.evaluate import head_macs
    from bioplaus.net.model import build_model

    info = get_info(cfg.dataset)
    model = build_model(cfg, info.shape, info.num_classes)
    pts, cum = [], 0
    for i, b in enumerate(model.spec.blocks):
        cum += b.macs
        err = record.get(f"block{i}_test_error")
        if err is not None:
            pts.append((b.name, (cum + head_macs(model, i)) / 1e6, err))
    cum += model.spec.out_in * model.spec.num_classes
    pts.append(("output", cum / 1e6, record["test_error"]))
    return pts


def _records_of(run_dir: str):
    """``(records, config dict, note)``: the finished epochs, or what an
    unfinished run has (note says which)."""
    log_path = os.path.join(run_dir, "log.h5")
    ckpt_path = os.path.join(run_dir, "checkpoint.h5")
    if not os.path.exists(log_path) and not os.path.exists(ckpt_path):
        raise RuntimeError(f"{run_dir}: no log.h5 or checkpoint.h5 (is this a run directory "
                           "written by `bioplaus train --out`?)")
    if os.path.exists(log_path):
        lg = load_log(log_path)
        if lg["records"]:
            return lg["records"], lg["meta"]["config"], ""
        part = lg["meta"].get("partial_record")
        if part:
            return [part], lg["meta"]["config"], (
                f"no epoch finished: step {part['steps']} of epoch {part['epoch']}")
    if os.path.exists(ckpt_path):
        ck = load_checkpoint(ckpt_path)
        part = ck["partial"]
        n = part.get("_n", 0)
        if n:
            rec = {"epoch": ck["epoch"], "steps": ck["step"], "eval_split": "test",
                   "test_error": None}
            for g, acc in part.items():
                if isinstance(acc, dict) and "correct" in acc:
                    rec[f"{g}:train_error"] = 100.0 * (1 - acc["correct"] / n)
            return [rec], ck["config"], (f"no epoch finished: training error of the {n} "
                                         f"examples seen in epoch {ck['epoch']}, not evaluated yet")
    raise RuntimeError(f"{run_dir}: the run has not trained a step yet; nothing to plot")


def _curves(cfg: Config, recs: list[dict], kind: str):
    """[(label, values)] for the blocks, then the output, of one kind (train|test)."""
    from bioplaus.data.registry import get_info
    from bioplaus.net.model import build_model

    info = get_info(cfg.dataset)
    spec = build_model(cfg, info.shape, info.num_classes).spec
    out = []
    for i, b in enumerate(spec.blocks):
        vals = [r.get(f"block{i}_{kind}_error", r.get(f"{b.name}:{kind}_error")) for r in recs]
        if any(v is not None for v in vals):
            out.append((f"{b.name} (block {i})", vals))
    vals = [r.get(f"{kind}_error", r.get(f"{spec.out_name}:{kind}_error")) for r in recs]
    if any(v is not None and np.isfinite(v) for v in vals):
        out.append(("output", vals))
    return out


def plot_run(run_dir: str) -> list[str]:
    """Draw the run's figures next to its log; return the paths written."""
    plt = _pyplot()
    paths = []
    for name, fig in figures(run_dir):
        paths.append(os.path.join(run_dir, name))
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def figures(run_dir: str) -> list:
    """``[(file name, matplotlib figure)]`` of the run (errors, then exits if evaluated)."""
    plt = _pyplot()
    recs, cfg_dict, note = _records_of(run_dir)
    cfg = Config.from_dict(cfg_dict)
    epochs = np.array([r["epoch"] for r in recs])
    split = recs[-1].get("eval_split", "test")
    cmap = plt.get_cmap("viridis")
    marker = "o" if len(recs) <= 20 else None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    allv = []
    for ax, kind in zip(axes, ("train", "test")):
        curves = _curves(cfg, recs, kind)
        nb = sum(1 for label, _ in curves if label != "output")
        for j, (label, vals) in enumerate(curves):
            v = np.array([np.nan if x is None else x for x in vals], float)
            allv += [x for x in v if np.isfinite(x)]
            if label == "output":
                ax.plot(epochs, v, color="black", lw=1.6, ls="--", marker=marker, ms=4,
                        mfc="none", zorder=3, label=label)
            else:
                ax.plot(epochs, v, color=cmap(0.9 * j / max(nb - 1, 1)), lw=1.3, marker=marker,
                        ms=3, zorder=2, label=label)
        epoch_axis(ax, epochs)
        ax.set_title(f"{kind if kind == 'train' else split} error")
        ax.grid(alpha=0.3, which="major")
        if not curves:
            ax.text(0.5, 0.5, "not evaluated yet", transform=ax.transAxes, ha="center",
                    va="center", color="gray")
    percent_axis(axes[0], allv)
    axes[0].set_ylabel("error")
    handles, labels = max((ax.get_legend_handles_labels() for ax in axes), key=lambda hl: len(hl[1]))
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(0.86, 0.5), fontsize=8,
               frameon=False)
    title = f"{cfg.dataset} {cfg.net} {cfg.rule} (bioplaus)"
    fig.suptitle(title + (f"\n{note}" if note else ""), fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.85, 1))
    figs = [("errors.png", fig)]
    if recs[-1].get("test_error") is None:
        return figs  # nothing evaluated yet: no exit curve
    pts = exit_points(cfg, recs[-1])
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([p[1] for p in pts], [p[2] for p in pts], "-", color="0.6", zorder=1)
    markers = "osD^v<>pPX*h"
    for j, (label, x, y) in enumerate(pts):
        if label == "output":
            ax.scatter([x], [y], marker="*", s=120, color="black", zorder=3, label=label)
        else:
            ax.scatter([x], [y], marker=markers[j % len(markers)], s=36,
                       color=cmap(0.9 * j / max(len(pts) - 2, 1)), zorder=2, label=label)
    percent_axis(ax, [p[2] for p in pts])
    from matplotlib import ticker

    ax.xaxis.set_major_locator(ticker.MaxNLocator(nbins=5))
    ax.set_xlabel("multiply-accumulates per example to reach the exit (millions)")
    ax.set_ylabel(f"{split} error")
    ax.set_title(f"early exits, epoch {recs[-1]['epoch']}: {cfg.net} {cfg.rule}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    figs.append(("exits.png", fig))
    return figs
