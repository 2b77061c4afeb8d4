"""Where a run was made: the machine and the source tree's commit, as every
run's ``train.log`` and log file record them (and the benchmarks print)."""
from __future__ import annotations

import os
import platform
import subprocess

import numpy as np


def machine_description(xp) -> str:
    """The CPU (model, cores) or the GPU (its name) that ``xp`` computes on."""
    if xp is np:
        return f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    dev = xp.cuda.Device()
    props = xp.cuda.runtime.getDeviceProperties(dev.id)
    return "GPU: " + props["name"].decode()


def git_commit() -> str:
    """The source tree's commit (``$BIOPLAUS_COMMIT`` where the tree has no git)."""
    if os.environ.get("BIOPLAUS_COMMIT"):
        return os.environ["BIOPLAUS_COMMIT"]
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5)
        commit = out.stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "."], cwd=here,
                               capture_output=True, timeout=5).returncode
        return commit + ("+uncommitted-changes" if dirty == 1 else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
