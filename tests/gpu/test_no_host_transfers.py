"""No read back to the host inside a training step: losses, correct counts and the
divergence guards stay on the device until the reporting interval reads them.

The step runs on :mod:`tests.gpu.counting_xp`, a CuPy-shaped array module on
NumPy that records every ``float()``, ``int()``, ``bool()``, ``.item()``,
``.tolist()``, ``.get()``/``asnumpy`` and ``np.asarray`` of a device array,
installed as the backend's CuPy: the trainer, the rules, the nets and the
fast wing take their CuPy code paths. A whole training step
(:meth:`~bioplaus.train.Trainer._train_batch`: every block's forward, the
rule's updates, every optimizer step, the statistics and the guards) of local,
global and frc rules on mlp and on a narrow vgg8b must read nothing; the
reporting interval then reads everything in one transfer, and the numbers it
reads are those of the same steps on NumPy.
"""
import numpy as np
import pytest

from bioplaus import backend, losses
from bioplaus.config import Config
from bioplaus.evaluate import evaluate
from bioplaus.rules.registry import get_rule
from bioplaus.train import Trainer, TrainingDiverged
from tests.gpu import counting_xp as cx

NETS = {
    "mlp": dict(net="mlp", num_hidden=16, num_layers=2),
    "vgg8b": dict(net="vgg8b", feat_mult=1 / 16, num_hidden=16),
}
DECODER = {"dim_in_decoder": 16}  # vgg8b's decoders, for the rules that have one
# local (pred, sim, both, -bio), global (backprop, fa, glob+sim), frc (fixed and trainable)
RULES = ["pred", "predsim", "pred-bio", "sim-bio", "backprop", "fa", "glob+sim", "frc-sign",
         "frc-trainable"]
# SGD, not Adam, for the comparison with NumPy: an encoder bias feeding batch norm has
# a gradient of 0 up to rounding, which Adam turns into a step of +-lr (tests/fast/test_steps.py)
BASE = dict(dataset="fashion-mnist", train_subset=40, test_subset=20, batch_size=10, epochs=1,
            lr=1e-2, optim="sgd", momentum=0.9, dropout=0.1, lr_decay_milestones=(100,))
STEPS = 2


def _config(net, rule):
    extra = DECODER if net == "vgg8b" and get_rule(rule).pred or get_rule(rule).bio else {}
    return Config(**{**BASE, **NETS[net], **extra, "rule": rule})


def _quiet(*_):
    pass


def _steps(cfg, out):
    """STEPS training steps; returns (trainer, the device reads inside each step)."""
    tr = Trainer(cfg, str(out), progress=False, log=_quiet)
    batches = tr.data.train_batches(1, 0)
    inside = []
    for _ in range(STEPS):
        xb, yb = next(batches)  # the data pipeline moves the batch to the device
        n0 = len(cx.READS)
        tr._train_batch(xb, yb, cfg.lr)
        tr.step += 1
        tr.batch += 1
        inside.append(cx.READS[n0:])
    return tr, inside


# every rule on vgg8b (convolutions, pools, the decoders' average pools); on mlp one of
# each module (local, -bio, global, frc); the reference table once (the suite's time)
CASES = ([("vgg8b", rule, False) for rule in RULES]
         + [("mlp", rule, False) for rule in ("predsim", "sim-bio", "fa", "frc-trainable")]
         + [("vgg8b", "predsim", True)])


@pytest.mark.parametrize("net,rule,reference", CASES,
                         ids=[f"{n}-{r}{'-reference' if ref else ''}" for n, r, ref in CASES])
def test_a_training_step_reads_nothing_back(tmp_path, net, rule, reference):
    cfg = _config(net, rule).replace(reference=reference)
    with cx.installed():
        tr, inside = _steps(cfg.replace(device="gpu"), tmp_path / "dev")
        assert tr.xp is cx.xp
        for t, reads in enumerate(inside):
            assert not reads, f"host reads inside step {t}:\n{cx.describe(reads)}"
        n0 = len(cx.READS)
        partial = tr.partial  # the reporting interval: one transfer of every statistic
        reads = cx.READS[n0:]
        assert [w for w, _ in reads] == ["get"], cx.describe(reads)
        assert not cx.READS[len(cx.READS):]
        dev_params = {k: backend.to_numpy(v) for k, v in tr.model.params.items()}
    host, _ = _steps(cfg, tmp_path / "host")
    want = host.partial
    assert set(partial) == set(want) and partial["_n"] == want["_n"] == STEPS * BASE["batch_size"]
    for g in want:
        if g == "_n":
            continue
        assert set(partial[g]) == set(want[g]), g
        for k, v in want[g].items():
            assert partial[g][k] == pytest.approx(v, rel=1e-5, abs=1e-6), f"{g}.{k}"
    # the fast wing's CuPy branches (taken here) and its host branches (threads, pools)
    # order some float32 sums differently: after two steps of SGD (lr 1e-2, momentum)
    # the parameters agree to 2e-4 (fa's vgg8b differs most, by 7e-5; the others by 1e-6)
    for k, v in host.model.params.items():
        assert np.abs(dev_params[k] - v).max() <= 2e-4, k


@pytest.mark.parametrize("rule", ["pred-bio", "frc-sign"])  # exits through codes and scores
def test_the_evaluation_reads_once_at_the_end(tmp_path, rule):
    cfg = _config("vgg8b", rule)
    with cx.installed():
        tr = Trainer(cfg.replace(device="gpu"), str(tmp_path / "dev"), progress=False,
                     log=_quiet)
        batches = list(tr.data.eval_batches())  # two batches of 10 on the device
        assert len(batches) >= 1
        n0 = len(cx.READS)
        ev = evaluate(tr.model, iter(batches), "test")
        reads = cx.READS[n0:]
        assert [w for w, _ in reads] == ["get"], cx.describe(reads)
    host = Trainer(cfg, str(tmp_path / "host"), progress=False, log=_quiet)
    want = evaluate(host.model, host.data.eval_batches(), "test")
    assert ev["examples"] == want["examples"]
    assert ev["error"] == want["error"]
    assert ev["loss"] == pytest.approx(want["loss"], rel=1e-6)
    assert ev["exit_errors"] == want["exit_errors"]


def test_the_counter_sees_every_way_to_the_host():
    """The instrument itself: each conversion is recorded, arithmetic is not."""
    a = cx.xp.asarray(np.arange(6.0, dtype=np.float32).reshape(2, 3))
    n0 = len(cx.READS)
    s = (a * 2 + 1).sum()
    c = (cx.xp.argmax(a, axis=1) == 2).sum()
    assert isinstance(s, cx.DeviceArray) and s.shape == () and isinstance(c, cx.DeviceArray)
    assert cx.READS[n0:] == []
    float(s), int(c), bool(c), s.item(), a.tolist(), a.get(), np.asarray(a), f"{s:.2f}"
    assert [w for w, _ in cx.READS[n0:]] == ["float", "int", "bool", "item", "tolist", "get",
                                              "__array__", "format"]


def test_a_non_finite_loss_is_caught_at_the_report_naming_its_step(tmp_path):
    """The guard reads nothing inside the step; the report names the first bad step and layer."""
    cfg = _config("mlp", "predsim")
    with cx.installed():
        tr = Trainer(cfg.replace(device="gpu"), str(tmp_path / "dev"), progress=False,
                     log=_quiet)
        batches = tr.data.train_batches(1, 0)
        for t in range(3):
            if t == 1:
                tr.model.params["layers.1.encoder.weight"][0, 0] = np.nan
            xb, yb = next(batches)
            n0 = len(cx.READS)
            tr._train_batch(xb, yb, cfg.lr)
            assert cx.READS[n0:] == [], cx.describe(cx.READS[n0:])
            tr.step += 1
            tr.batch += 1
        with pytest.raises(TrainingDiverged, match=r"non-finite loss \(nan\) in layer layers\.1 at "
                                                   r"step 1 \(epoch 1, batch 1\)"):
            tr.read_stats()


def test_labels_are_range_checked_on_the_host_only():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\), got min 0, max 3"):
        losses.one_hot(np.array([0, 3]), 3)
    with cx.installed():
        y = cx.xp.asarray(np.array([0, 2]))
        n0 = len(cx.READS)
        Y = losses.one_hot(y, 3)
        L, _ = losses.softmax_cross_entropy(Y * 2.0, y)
        assert cx.READS[n0:] == [], cx.describe(cx.READS[n0:])
    np.testing.assert_array_equal(Y.get(), np.eye(3)[[0, 2]])
