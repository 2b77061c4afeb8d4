"""A tiny `bioplaus train` in a subprocess, for the lock and signal tests."""
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_ARGS = ["--net", "mlp", "--num-layers", "1", "--num-hidden", "16", "--train-subset", "200",
             "--test-subset", "100", "--batch-size", "50", "--lr", "0.002",
             "--lr-decay-milestones", "1000", "--rule", "predsim", "--dataset", "fashion-mnist",
             "--no-progress"]


def start_train(out, *extra, epochs=2000):
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "bioplaus", "train", *TINY_ARGS, "--epochs",
                             str(epochs), "--out", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)


def wait_for(cond, timeout=60.0, proc=None):
    t = time.time()
    while time.time() - t < timeout:
        if cond():
            return True
        if proc is not None and proc.poll() is not None:
            return cond()
        time.sleep(0.05)
    return False
