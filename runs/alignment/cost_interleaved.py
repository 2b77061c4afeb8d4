"""Per-step and per-record wall time, interleaved in one process (mlp predsim, Fashion-MNIST recipe).

Run as: PYTHONPATH=$PWD OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python3 runs/alignment/cost_interleaved.py out/cost-il
(printed JSON saved as runs/alignment/cost/interleaved.json).
"""
import json
import sys
import time

import numpy as np

from bioplaus import optim
from bioplaus.align import AlignmentLog
from bioplaus.cli.train import build_config
from bioplaus.train import Trainer

cfg = build_config("runs/fashion-mnist/mlp-predsim.toml",
                   {"epochs": 1, "train_subset": 12800, "test_subset": 500})
tr = Trainer(cfg, sys.argv[1], progress=False, log=lambda *a: None)
log = AlignmentLog(1)
steps, recs = [], []
it = tr.data.train_batches(1, 0)
for i in range(40):
    xb, yb = next(it)
    masks = __import__("bioplaus.net.forward", fromlist=["dropout_masks"]).dropout_masks(
        tr.model, xb.shape[0], cfg.dropout, cfg.seed, tr.step)
    t = time.perf_counter()
    log.record(tr.model, xb, yb, masks, step=tr.step, epoch=0.0)
    recs.append(time.perf_counter() - t)
    t = time.perf_counter()
    tr._train_batch(xb, yb, cfg.lr)
    tr.step += 1
    steps.append(time.perf_counter() - t)
s, r = np.median(steps[5:]), np.median(recs[5:])
print(json.dumps({"step_s_median": s, "record_s_median": r, "record_over_step": r / s,
                  "overhead_N10": r / (10 * s), "overhead_N100": r / (100 * s),
                  "n": len(steps) - 5}, indent=1))
