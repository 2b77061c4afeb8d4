"""The step benchmark, the memory table and the counted traffic, on tiny nets.

No timing is asserted: the tests check that every figure is printed, that
the FLOP and traffic counts equal hand-computed values, that the memory
tracker measures what a function allocates, that backprop's peak memory
grows with depth faster than a local rule's, and that the PyTorch step the
benchmark times computes the same update as bioplaus's.
"""
import re

import numpy as np
import pytest
from click.testing import CliRunner

from bioplaus.bench import memory, steps, traffic
from bioplaus.cli.bench_steps import steps as steps_cmd
from bioplaus.cli.bench_steps import traffic as traffic_cmd
from bioplaus.net.spec import build_net

NUM = r"-?\d+(\.\d+)?"


def _tiny_model(rule, net="mlp", **kw):
    """A float32 step of a tiny net, 3 classes, batch 4: mlp 2x8 on 1x2x2 inputs or
    vgg8b / 64 on 1x16x16; ``kw`` replaces config fields."""
    opts = (dict(num_layers=2, num_hidden=8) if net == "mlp" else
            dict(feat_mult=1 / 64, num_hidden=16, dim_in_decoder=64))  # decoders average-pool
    cfg = steps.bench_config(net, rule, **opts).replace(**kw)
    shape = (1, 2, 2) if net == "mlp" else (1, 16, 16)
    x, y, _, _ = steps.make_batch(np, 4, shape, 3)
    return steps.BioplausStep(cfg, np, x, y, shape, 3)


# -- FLOP counts ---------------------------------------------------------------------------
def test_step_flops_of_a_tiny_mlp_by_hand():
    # mlp 4 -> 8 -> 8 -> 3, batch n = 4; encoder MACs per example 4*8 = 32 and 8*8 = 64.
    n = 4
    f = steps.step_flops(_tiny_model("predsim").model, n)
    assert f.encoders == 2 * n * (32 + 64) * 2  # forward + dW, no dx (detached): 1536
    # decoders 8 -> 3: forward, dW, dh; NN 8 -> 8: forward, dW, dh; two blocks
    assert f.heads == 2 * (3 * 2 * n * 8 * 3) + 2 * (3 * 2 * n * 8 * 8)  # 1152 + 3072
    # S(r) forward and backward 2 n^2 d each (d = 8), S(Y) forward 2 n^2 C; two blocks
    assert f.similarity == 2 * (2 * 2 * n * n * 8 + 2 * n * n * 3)  # 1216
    assert f.output == 2 * n * 8 * 3 * 2  # forward + dW: 384
    assert f.total == 7360

    b = steps.step_flops(_tiny_model("backprop").model, n)
    # forward + dW for both blocks, dx only into the second (not into the input)
    assert b.encoders == 2 * n * (32 * 2 + 64 * 3)  # 2048
    assert (b.heads, b.similarity) == (0, 0)
    assert b.output == 2 * n * 8 * 3 * 3  # forward, dW, dx: 576

    p = steps.step_flops(_tiny_model("pred-bio").model, n)
    T = 128  # decoders 8 -> 128; target projection Y P^T and the exit's codes, 2 n C T each
    assert p.heads == 2 * (3 * 2 * n * 8 * T + 2 * (2 * n * 3 * T))
    assert p.similarity == 0


def test_step_flops_of_a_tiny_vgg_count_the_sim_convolution():
    # vgg8b / 64 on 16x16: widths 2, 4, M, 4, 8, M, 8, M, 8, M then fc 16; batch 4.
    n = 4
    m = _tiny_model("predsim", net="vgg8b").model
    f = steps.step_flops(m, n)
    b0 = m.spec.blocks[0]
    assert (b0.n_in, b0.n_out, b0.out_hw) == (1, 2, 16)
    enc = sum(b.macs for b in m.spec.blocks)
    assert f.encoders == 2 * 2 * n * enc
    # the sim conv c -> c 3x3 over every block's map: three products each
    sim_conv = sum(b.n_out ** 2 * 9 * b.out_hw ** 2 for b in m.spec.blocks if b.kind == "conv")
    fc = m.spec.blocks[-1]
    nn_fc = fc.n_out ** 2  # 16 x 16
    dec = sum(3 * 2 * n * g.dim_in * 3 for g in m.heads)  # decoders dim_in -> 3 classes
    assert f.heads == 3 * 2 * n * (sim_conv + nn_fc) + dec


# -- the PyTorch formulation computes the same step ------------------------------------------
@pytest.mark.parametrize("rule,net", [("predsim", "mlp"), ("pred-bio", "mlp"), ("backprop", "mlp"),
                                      ("predsim", "vgg8b"), ("pred-bio", "vgg8b")])
def test_torch_step_makes_the_same_update_as_bioplaus(rule, net):
    torch_step, why = steps.load_torch_step()
    assert torch_step is not None, why
    # plain SGD: each update is -lr times the gradient, so the two steps' gradients are compared
    bp = _tiny_model(rule, net=net, optim="sgd", lr=0.1)
    m = bp.model
    ts = torch_step.TorchStep(m, lr=0.1, optim="sgd")
    before = {k: v.copy() for k, v in m.params.items()}
    bp()
    x, y = torch_step.inputs(bp.x, bp.y)
    ts.step(x, y)
    after_t = ts.params()
    for k, p0 in before.items():
        d_bp, d_t = m.params[k] - p0, after_t[k] - p0
        scale = np.abs(d_t).max()
        if k.endswith("encoder.bias"):  # batch norm removes it: both are round-off
            assert np.abs(d_bp).max() < 1e-4 and scale < 1e-4, k
            continue
        assert scale > 0, f"{k}: no update"
        assert np.abs(d_bp - d_t).max() <= 2e-3 * scale, k


# -- memory ------------------------------------------------------------------------------------
def test_tracker_measures_what_a_step_allocates(xp):
    nbytes = 4 * 250_000

    def fn():
        a = xp.ones(250_000, dtype=np.float32)
        b = a * 2  # two arrays alive at once
        del a, b

    peak = memory.step_peak_bytes(fn, xp)
    assert 2 * nbytes <= peak < 2 * nbytes + 2**20


def test_memory_table_backprop_grows_with_depth_more_than_a_local_rule():
    # 256 units: arrays (and weight gradients) large next to the Python objects tracemalloc sees
    rows = memory.run_memory_bench(("predsim",), batch=8, out=lambda s: None, num_hidden=256,
                                   pairs=memory.DEPTH_PAIRS[1:])
    by_rule = {r["rule"]: r for r in rows}
    assert set(by_rule) == {"predsim", "backprop"}
    # mlp with 9 blocks: backprop holds every block's activations and gradients at once,
    # predsim one block's
    assert by_rule["backprop"]["ratio"] > 1.5
    assert by_rule["predsim"]["ratio"] < 1.1
    assert by_rule["predsim"]["kept_deep_mb"] is not None
    assert by_rule["backprop"]["kept_deep_mb"] is None


# -- the commands ---------------------------------------------------------------------------
def _rows(output, first):
    return [line.split() for line in output.splitlines() if line.split()[:1] == [first]]


def test_steps_command_prints_every_figure():
    res = CliRunner().invoke(steps_cmd, ["--nets", "mlp", "--rules", "predsim",
                                         "--batch-size", "8", "--repeats", "1",
                                         "--num-hidden", "16", "--peak-size", "64"])
    assert res.exit_code == 0, res.output
    out = res.output
    assert re.search(rf"matmul peak .*: {NUM} GFLOP/s", out)
    assert "load average" in out
    header = next(line for line in out.splitlines() if line.startswith("net"))
    for col in ("ms/step", "img/s", "GFLOP", "GFLOP/s", "%peak", "state MB", "peak MB",
                "torch ms", "ratio", "min ratio", "upd ms", "torch upd"):
        assert col in header
    rows = _rows(out, "mlp")
    assert [r[1] for r in rows] == ["predsim"]
    for r in rows:
        values = r[2:]
        assert len(values) == 13, r
        assert all(re.fullmatch(NUM + "%?", v) for v in values), r  # torch timed: no '-'
        assert float(values[2]) > 0  # images/s
        # the updates are part of the step, for either library
        assert 0 < float(values[11]) <= float(values[0])
        assert 0 < float(values[12]) <= float(values[8])

    res = CliRunner().invoke(steps_cmd, ["--nets", "mlp", "--rules", "pred-bio", "--no-torch",
                                         "--batch-size", "8", "--repeats", "1",
                                         "--num-hidden", "16", "--peak-size", "64"])
    assert res.exit_code == 0, res.output
    assert "not timed (--no-torch)" in res.output
    (r,) = _rows(res.output, "mlp")
    assert r[-5:-2] == ["-", "-", "-"] and r[-1] == "-"
    assert 0 < float(r[-2]) <= float(r[2])  # bioplaus's updates are still timed

    # a rule the PyTorch side does not formulate: bioplaus's figures alone
    res = CliRunner().invoke(steps_cmd, ["--nets", "mlp", "--rules", "frc-sym", "--batch-size", "8",
                                         "--repeats", "1", "--num-hidden", "16", "--peak-size", "64"])
    assert res.exit_code == 0, res.output
    (r,) = _rows(res.output, "mlp")
    assert re.fullmatch(NUM, r[2]) and r[-5:-2] == ["-", "-", "-"] and r[-1] == "-"


def test_steps_memory_command_prints_the_depth_table():
    res = CliRunner().invoke(steps_cmd, ["--memory", "--rules", "pred-bio", "--memory-batch", "2",
                                         "--num-hidden", "16", "--feat-mult", "0.015625"])
    assert res.exit_code == 0, res.output
    rows = {(r[0], r[1]): r for r in _rows(res.output, "vgg8b/vgg11b") + _rows(res.output, "mlp-3/mlp-9")}
    assert set(rows) == {(p, r) for p in ("vgg8b/vgg11b", "mlp-3/mlp-9") for r in ("pred-bio", "backprop")}
    assert "batch 2" in res.output
    for r in rows.values():
        assert all(re.fullmatch(NUM, v) or v == "-" for v in r[2:]), r


def test_steps_command_refuses_unknown_names():
    res = CliRunner().invoke(steps_cmd, ["--rules", "predsim,nope"])
    assert res.exit_code != 0 and "nope" in res.output


# -- counted traffic ---------------------------------------------------------------------------
def test_traffic_of_a_tiny_mlp_by_hand():
    # mlp 4 -> 3 -> 3 -> 2 (input 1x2x2, two blocks of 3, two classes)
    spec = build_net("mlp", (1, 2, 2), 2, num_layers=2, num_hidden=3)
    # block params: W + b + bn weight + bn bias: 12 + 3 + 6 = 21 and 9 + 3 + 6 = 18; out 6 + 2 = 8
    rows = traffic.layer_traffic(spec, "backprop")
    assert [r.buffered for r in rows] == [4 + 3, 3 + 3, 3]  # x + a per block, x for the output
    assert [r.params for r in rows] == [21, 18, 8]
    assert [r.reads for r in rows] == [42, 36, 16]  # forward + backward
    assert [r.writes for r in rows] == [21, 18, 8]
    tot = traffic.totals(rows, "backprop")
    assert (tot.peak_buffered, tot.reads, tot.writes) == (16, 94, 47)  # sum over layers
    assert tot.per_example(2) == {"buffered": 64, "read": 188.0, "written": 94.0}

    rows = traffic.layer_traffic(spec, "predsim")
    # x + a + h + r; heads: decoder 3 -> 2 (6 + 2) and NN 3 x 3 (9)
    assert [r.buffered for r in rows] == [4 + 3 + 3 + 3, 3 + 3 + 3 + 3, 3]
    assert [r.params for r in rows] == [21 + 17, 18 + 17, 8]
    assert [r.reads for r in rows] == [38, 35, 8]  # one read each: updated on chip
    tot = traffic.totals(rows, "predsim")
    assert (tot.peak_buffered, tot.reads, tot.writes) == (13, 81, 81)  # max over layers

    rows = traffic.layer_traffic(spec, "frc-sym")
    assert [r.buffered for r in rows] == [7, 6, 3]
    assert [r.regenerated for r in rows] == [2 * 2 * 3, 2 * 2 * 3, 0]  # M and K, C x 3 each
    assert traffic.totals(rows, "frc-sym").reads == 47

    rows = traffic.layer_traffic(spec, "pred-bio", target_proj_size=4)
    # decoder 3 -> 4 (12 + 4) trained; its B (4 x 3) and P (4 x 2) regenerated
    assert [r.buffered for r in rows] == [4 + 3 + 3, 3 + 3 + 3, 3]
    assert [r.params for r in rows] == [21 + 16, 18 + 16, 8]
    assert [r.regenerated for r in rows] == [12 + 8, 12 + 8, 0]


def test_traffic_of_a_tiny_vgg_sums_for_backprop_and_takes_the_max_for_local_rules():
    # vgg6a / 64 on 8x8: conv 1->2 @8 M, conv 2->4 @4 M, conv 4->8 @2 M, conv 8->8 @1, fc 8->1024
    spec = build_net("vgg6a", (1, 8, 8), 10, feat_mult=1 / 64)
    convs = [(b.n_in, b.n_out, b.out_hw) for b in spec.blocks if b.kind == "conv"]
    assert convs == [(1, 2, 8), (2, 4, 4), (4, 8, 2), (8, 8, 1)]
    xa = [1 * 64 + 2 * 64, 2 * 16 + 4 * 16, 4 * 4 + 8 * 4, 8 * 1 + 8 * 1, 8 + 1024]
    bp = traffic.totals(traffic.layer_traffic(spec, "backprop"), "backprop")
    assert bp.peak_buffered == sum(xa) + 1024  # + the output layer's input
    frc = traffic.totals(traffic.layer_traffic(spec, "frc-sym"), "frc-sym")
    assert frc.peak_buffered == max(xa)
    assert 2 * frc.reads == bp.reads and frc.writes == bp.writes


def test_traffic_command_prints_tables_and_totals():
    res = CliRunner().invoke(traffic_cmd, ["--nets", "mlp", "--rules", "backprop,frc-sym",
                                           "--num-hidden", "16"])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "4 bytes per word" in out
    assert "mlp / backprop" in out and "mlp / frc-sym" in out
    for col in ("buf KB", "W read KB", "W write KB", "regen KB"):
        assert col in out
    totals = {r[1]: r for r in _rows(out, "mlp") if r[1] != "/"}  # not the "mlp / rule" titles
    assert set(totals) == {"backprop", "frc-sym"}
    assert totals["backprop"][3] == "1.00"  # ratio of backprop to itself
    assert float(totals["frc-sym"][5]) == 0.5  # half the weight reads


# -- the profile --------------------------------------------------------------------------------
def test_profile_times_every_op_and_leaves_the_step_unchanged():
    from bioplaus.bench import profile

    originals = {(m.__name__, n): getattr(m, n, None) for m, names in profile.INTERNALS
                 for n in names}
    a, b = _tiny_model("predsim", net="vgg8b"), _tiny_model("predsim", net="vgg8b")
    kernels_before = a.model.k
    a()
    res = profile.profile_step(a, np, steps=2)  # two steps untimed, then two timed
    for _ in range(5):  # b: the same five steps without timers
        b()
    for k in a.model.params:
        np.testing.assert_array_equal(a.model.params[k], b.model.params[k], err_msg=k)
    # the wrappers are gone again
    assert {(m.__name__, n): getattr(m, n, None) for m, names in profile.INTERNALS
            for n in names} == originals
    assert a.model.k is kernels_before
    ops = {name: (calls, ms) for name, calls, ms in res["ops"]}
    # vgg8b: six conv blocks, each an encoder and a learned 3x3 sim head; col2im only for
    # the heads (the block input is detached); one optimizer step per block and the output
    assert ops["conv.im2col"][0] == 12 and ops["conv.col2im"][0] == 6
    assert ops["conv.conv2d_forward"][0] == 12 and ops["optim.step"][0] == 8
    assert ops["act.relu_forward"][0] == 7  # six conv blocks and the fc block
    assert all(ms >= 0 for _, ms in ops.values())
    assert 0 < res["sum_ms"] <= res["profiled_ms"]


def test_profile_command_prints_the_table():
    from bioplaus.cli.bench_steps import profile as profile_cmd

    res = CliRunner().invoke(profile_cmd, ["--net", "mlp", "--rule", "pred-bio", "--num-hidden",
                                           "32", "--batch-size", "8", "--steps", "1", "--top", "3"])
    assert res.exit_code == 0, res.output
    assert "step without timers" in res.output
    rows = [line.split() for line in res.output.splitlines() if line[:1].isalpha() and "." in
            line.split()[0] and len(line.split()) == 4]
    assert len(rows) == 3 and all(float(r[2]) >= 0 for r in rows)
    assert "more ops)" in res.output


# -- the products-only replay (benchmarks/mlp_products.py) ---------------------------------
def _load_products_script():
    import importlib.util

    path = steps.TORCH_STEP_FILE.parent / "mlp_products.py"
    spec = importlib.util.spec_from_file_location("bioplaus_bench_mlp_products", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_products_replay_counts_the_products_of_a_predsim_step():
    mod = _load_products_script()
    n = 4
    m = _tiny_model("predsim").model  # mlp 4 -> 8 -> 8 -> 3
    blocks, out = mod.shapes([4, 8, 8], 3)
    assert (blocks, out) == ([(4, 8), (8, 8)], (8, 3))
    # the replay holds exactly the products the benchmark counts for a step
    assert mod.replay_flops(blocks, out, n) == steps.step_flops(m, n).total == 7360


def test_products_replay_prints_both_libraries_and_their_ratio(capsys):
    mod = _load_products_script()
    mod.main(["--hidden", "16", "--blocks", "2", "--batch", "8", "--repeats", "2", "--calls", "1",
              "--pause", "0"])
    out = capsys.readouterr().out
    assert re.search(rf"batch 8: {NUM} GFLOP; median of 2 turns of 1 replays", out)
    for lib in ("numpy", "torch"):
        (line,) = [ln for ln in out.splitlines() if ln.split()[:1] == [lib]]
        ms, gflops = float(line.split()[1]), float(line.split()[3])
        assert ms > 0 and gflops > 0
    assert re.search(rf"ratio numpy / torch: {NUM}", out)
    with pytest.raises(SystemExit):
        mod.main(["--repeats", "0"])
