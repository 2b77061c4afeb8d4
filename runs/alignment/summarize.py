"""Tables and plots of the recorded alignment runs (out/alignment -> runs/alignment)."""
import json
import os
import sys

import numpy as np

from bioplaus.io import load_log
from bioplaus.plot_align import _net_order, _pyplot, draw

SRC, DST = sys.argv[1], sys.argv[2]
RULES = ["backprop", "fa", "glob+sim", "pred", "sim", "predsim", "pred-bio", "sim-bio",
         "predsim-bio", "frc-sym", "frc-sign", "frc-random", "frc-trainable"]
LAYERS = ["layers.0", "layers.1", "layers.2", "layer_out"]


def fmt(v, d=1):
    return "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{d}f}"


logs, finals = {}, {}
for r in RULES:
    logs[r] = load_log(os.path.join(SRC, f"mlp-{r}", "log.h5"))
    with open(os.path.join(SRC, f"mlp-{r}.align.json")) as f:
        finals[r] = json.load(f)

out = []
out.append("## After 100 steps: angle to the backprop gradient (degrees) and norm ratio |u|/|g|\n")
out.append("`bioplaus align RUN --batches 4` on each run's last checkpoint (float64, reference "
           "ops): mean +- std over the 4 batches the run would train on next. Encoder weights "
           "of the three 1024-unit blocks and the output layer's weight.\n")
out.append("| rule | " + " | ".join(f"{l} angle | {l} ratio" for l in LAYERS) + " | test error % |")
out.append("|---" * (1 + 2 * len(LAYERS) + 1) + "|")
for r in RULES:
    rows = {x["param"]: x for x in finals[r]["params"]}
    cells = []
    for l in LAYERS:
        x = rows[l + (".encoder.weight" if l != "layer_out" else ".weight")]
        cells.append(f"{fmt(x['angle'])} +- {fmt(x['angle_std'])}")
        cells.append(f"{fmt(x['ratio'], 3)}")
    err = logs[r]["records"][-1]["test_error"]
    out.append(f"| {r} | " + " | ".join(cells) + f" | {err:.2f} |")

out.append("\n## Over training: angle of each block's encoder weight (degrees), "
           "recorded by `--log-alignment 10`\n")
out.append("One batch per record (the step's own batch and dropout masks, float32 as the run). "
           "Steps 0 / 10 / 50 / 90 of 100.\n")
out.append("| rule | " + " | ".join(f"{l}" for l in LAYERS[:3]) + " |")
out.append("|---" * 4 + "|")
for r in RULES:
    a = logs[r]["alignment"]
    steps = list(np.asarray(a["step"]).astype(int))
    cells = []
    for l in LAYERS[:3]:
        v = np.asarray(a["angle"][l + ".encoder.weight"])
        cells.append(" / ".join(fmt(float(v[steps.index(s)]), 0) for s in (0, 10, 50, 90)))
    out.append(f"| {r} | " + " | ".join(cells) + " |")

out.append("\n## Fixed feedback against the matrix it replaces (degrees), steps 0 / 50 / 90 / final\n")
out.append("| rule | matrix | angle |")
out.append("|---|---|---|")
for r in RULES:
    a = logs[r]["alignment"]
    steps = list(np.asarray(a["step"]).astype(int))
    for k in sorted(a.get("feedback", {}), key=_net_order):
        v = np.asarray(a["feedback"][k])
        fin = finals[r]["feedback"].get(k)
        out.append(f"| {r} | {k} | " + " / ".join(fmt(float(v[steps.index(s)])) for s in (0, 50, 90))
                   + f" / {fmt(fin)} |")
with open(os.path.join(DST, "alignment.md"), "w") as f:
    f.write("# Alignment of every rule's update with the gradient: Fashion-MNIST mlp, 100 steps\n\n"
            + "\n".join(out) + "\n")

plt = _pyplot()
fig, axes = plt.subplots(4, 4, figsize=(16, 13), sharex=True, sharey=True)
cmap = plt.get_cmap("viridis")
for ax, r in zip(axes.flat, RULES):
    draw(ax, None, logs[r]["alignment"], r, cmap)
    ax.set_xlabel("epoch (of 12800 examples)")
for ax in list(axes.flat)[len(RULES):]:
    ax.axis("off")
fig.suptitle("Fashion-MNIST mlp (3 x 1024): angle between each layer's update and the backprop "
             "gradient of the output loss, every 10 steps (bioplaus)")
fig.tight_layout(rect=(0, 0, 1, 0.97))
fig.savefig(os.path.join(DST, "alignment.png"), dpi=90)
plt.close(fig)

fb_rules = [r for r in RULES if logs[r]["alignment"].get("feedback")]
fig, axes = plt.subplots(1, len(fb_rules), figsize=(3.3 * len(fb_rules), 3.4), sharey=True)
for ax, r in zip(axes, fb_rules):
    a = logs[r]["alignment"]
    for k in sorted(a["feedback"], key=_net_order):
        ax.plot(a["epoch"], a["feedback"][k], label=k)
    ax.set_ylim(-3, 183)
    ax.set_yticks([0, 45, 90, 135, 180])
    ax.axhline(90, color="grey", lw=0.7, ls=":")
    ax.set_title(r)
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
axes[0].set_ylabel("angle (deg)")
fig.suptitle("fixed feedback vs the matrix it replaces")
fig.tight_layout()
fig.savefig(os.path.join(DST, "feedback.png"), dpi=90)
plt.close(fig)
print("wrote", DST)
