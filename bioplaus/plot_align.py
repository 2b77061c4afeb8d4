"""``alignment.png``: each layer's angle to the true gradient against the epoch.

Drawn from the ``/alignment`` group of a run's ``log.h5`` (written by
``bioplaus train --log-alignment N``, see :mod:`bioplaus.align`): one curve
per layer's weight (encoder weights and the output layer's weight), and, on
a second panel, one per fixed feedback matrix where the rule has one.
"""
from __future__ import annotations

import os
import re

import numpy as np

from bioplaus.io import load_log
from bioplaus.plot import _pyplot


def _net_order(label: str):
    """Net order: conv blocks (``features.<i>``) by index, then fully connected blocks
    (``layers.10`` after ``layers.9``), the output layer last."""
    m = re.match(r"(.*?)\.(\d+)(\..*)?$", label)
    if m is None:
        return (2, label, 0, "")
    return (0 if m.group(1) == "features" else 1, m.group(1), int(m.group(2)), m.group(3) or "")


def weight_curves(cols: dict) -> dict:
    """``{label: angles}`` of every layer's weight (encoder and output weight), in net order."""
    out = {k.replace(".encoder.weight", "").replace(".weight", ""): np.asarray(v)
           for k, v in cols["angle"].items() if k.endswith("encoder.weight")
           or (k.endswith(".weight") and ".bn." not in k)}
    return {k: out[k] for k in sorted(out, key=_net_order)}


def draw(ax_u, ax_f, cols: dict, title: str = "", color_map=None):
    """Draw the curves of one run's alignment columns on two axes (``ax_f`` may be None)."""
    epochs = np.asarray(cols["epoch"])
    curves = weight_curves(cols)
    cmap = color_map
    for i, (label, ang) in enumerate(curves.items()):
        kw = {"color": cmap(i / max(len(curves) - 1, 1))} if cmap else {}
        ax_u.plot(epochs, ang, label=label, **kw)
    ax_u.axhline(90.0, color="grey", lw=0.7, ls=":")
    ax_u.set_ylim(-3, 183)
    ax_u.set_yticks([0, 45, 90, 135, 180])
    ax_u.set_xlabel("epoch")
    ax_u.set_ylabel("angle to backprop gradient (deg)")
    ax_u.set_title(title)
    ax_u.grid(alpha=0.3)
    ax_u.legend(fontsize=7)
    fb = cols.get("feedback") or {}
    if ax_f is not None and fb:
        for label in sorted(fb, key=_net_order):
            ang = fb[label]
            ax_f.plot(epochs, np.asarray(ang), label=label)
        ax_f.axhline(90.0, color="grey", lw=0.7, ls=":")
        ax_f.set_ylim(-3, 183)
        ax_f.set_yticks([0, 45, 90, 135, 180])
        ax_f.set_xlabel("epoch")
        ax_f.set_ylabel("angle (deg)")
        ax_f.set_title("fixed feedback vs the matrix it replaces")
        ax_f.grid(alpha=0.3)
        ax_f.legend(fontsize=7)


def plot_alignment(run_dir: str) -> list[str]:
    """Draw ``RUN_DIR/alignment.png`` if the run's log has alignment; return the paths written."""
    lg = load_log(os.path.join(run_dir, "log.h5"))
    cols = lg.get("alignment")
    if not cols or not len(np.atleast_1d(cols.get("step", []))):
        return []
    plt = _pyplot()
    cfg = lg["meta"].get("config", {})
    has_fb = bool(cols.get("feedback"))
    fig, axes = plt.subplots(1, 2 if has_fb else 1, figsize=(11 if has_fb else 6, 4),
                             squeeze=False)
    title = (f"{cfg.get('dataset', '')} {cfg.get('net', '')} {cfg.get('rule', '')}: "
             "rule update vs gradient")
    draw(axes[0][0], axes[0][1] if has_fb else None, cols, title, plt.get_cmap("viridis"))
    fig.tight_layout()
    path = os.path.join(run_dir, "alignment.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]
