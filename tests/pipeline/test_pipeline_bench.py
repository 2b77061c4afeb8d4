"""`bioplaus bench pipeline`: both layouts of both cases run, and what it counts is right."""
import numpy as np
import pytest

pytest.importorskip("ray")

from click.testing import CliRunner  # noqa: E402

from bioplaus.bench.pipeline import case_configs, run_pipeline_bench  # noqa: E402
from bioplaus.cli import main  # noqa: E402
from bioplaus.net.spec import build_net  # noqa: E402


def test_quick_bench_runs_both_layouts_and_counts_the_bytes_sent(local_ray):
    lines = []
    rows = run_pipeline_bench(quick=True, batch=16, out=lines.append)
    cfgs = dict(case_configs("predsim", 16, "cpu", quick=True))
    assert [(r["case"], r["stages"]) for r in rows] == [(c, n) for c in cfgs for n in (1, 2)]
    for r in rows:
        assert r["images_per_s"] > 0 and len(r["busy"]) == r["stages"]
        assert all(0 < b <= 1 for b in r["busy"])
        assert r["bubble"] == pytest.approx(1 - sum(r["busy"]) / r["stages"])
        cfg = cfgs[r["case"]]
        if r["stages"] == 1:
            assert r["sent_per_step"] == 0 and r["speedup"] == 1.0
            continue
        # what crosses the cut: the last block of stage 0's output (float32) and the labels (int64)
        spec = build_net(cfg.net, (1, 28, 28), 10, num_layers=cfg.num_layers,
                         num_hidden=cfg.num_hidden, feat_mult=cfg.feat_mult)
        edge = spec.blocks[r["bounds"][0][1] - 1]
        assert r["sent_per_step"] == 16 * (4 * int(np.prod(edge.out_shape)) + 8)
        assert r["input_bytes"] == 16 * (4 * 28 * 28 + 8)
    assert len(lines) == 2 + len(rows) + 1 and "2 stages x 1 core" in lines[3]


def test_bench_pipeline_refuses_a_global_rule():
    r = CliRunner().invoke(main, ["bench", "pipeline", "--quick", "--rule", "backprop"])
    assert r.exit_code == 1 and "backprop cannot be pipelined" in r.output
