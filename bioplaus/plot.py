"""Figures of a recorded run (matplotlib, the optional `plot` extra).

* ``errors.png``: per-layer training and test error against the epoch, each
  block's local classifier and the output layer (like Nøkland & Eidnes 2019,
  Fig. 2);
* ``exits.png``: the early-exit curve of the last epoch, test error against
  the multiply-accumulates spent to reach each exit (Mostafa et al. 2018).
"""
from __future__ import annotations

import os

import numpy as np

from bioplaus.config import Config
from bioplaus.io import load_log


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("bioplaus plot needs matplotlib: pip install 'bioplaus[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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


def plot_run(run_dir: str) -> list[str]:
    """Draw the run's figures next to its log; return the paths written."""
    plt = _pyplot()
    lg = load_log(os.path.join(run_dir, "log.h5"))
    recs = lg["records"]
    if not recs:
        raise RuntimeError(f"{run_dir}/log.h5 has no finished epoch to plot")
    cfg = Config.from_dict(lg["meta"]["config"])
    epochs = np.array([r["epoch"] for r in recs])
    n_blocks = sum(1 for k in recs[-1] if k.endswith("_loss_pred"))
    cmap = plt.get_cmap("viridis")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, kind in zip(axes, ("train", "test")):
        for i in range(n_blocks):
            key = f"block{i}_{kind}_error"
            if key in recs[-1]:
                ax.plot(epochs, [r.get(key, np.nan) for r in recs], color=cmap(i / max(n_blocks, 1)),
                        label=f"block {i}")
        ax.plot(epochs, [r[f"{kind}_error"] for r in recs], color="black", lw=2, label="output")
        ax.set_xlabel("epoch")
        ax.set_title(f"{kind} error")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("error (%)")
    axes[1].legend(fontsize=8)
    fig.suptitle(f"{cfg.dataset} {cfg.net} {cfg.rule} (bioplaus)")
    fig.tight_layout()
    paths = [os.path.join(run_dir, "errors.png")]
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)
    pts = exit_points(cfg, recs[-1])
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot([p[1] for p in pts], [p[2] for p in pts], "o-")
    for label, x, y in pts:
        ax.annotate(label, (x, y), fontsize=7, textcoords="offset points", xytext=(3, 3))
    ax.set_xlabel("multiply-accumulates per example to reach the exit (millions)")
    ax.set_ylabel(f"{recs[-1]['eval_split']} error (%)")
    ax.set_title(f"early exits, epoch {recs[-1]['epoch']}: {cfg.net} {cfg.rule}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    paths.append(os.path.join(run_dir, "exits.png"))
    fig.savefig(paths[1], dpi=110)
    plt.close(fig)
    return paths
