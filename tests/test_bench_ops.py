"""`bioplaus bench ops` runs and prints every figure (no timing is asserted)."""
import re

from click.testing import CliRunner

from bioplaus.cli import main


def test_bench_ops_prints_every_layer_with_gflops_and_peak_ratio():
    res = CliRunner().invoke(main, ["bench", "ops", "--repeats", "1", "--batch", "2"])
    assert res.exit_code == 0, res.output
    out = res.output
    for name in ("fc1", "fc2", "fc3", "out", "conv1", "conv2", "conv3", "conv4", "conv5",
                 "conv6", "all linear", "all conv2d"):
        line = next((ln for ln in out.splitlines() if ln.startswith(name + " ")), None)
        assert line is not None, name
        pct = re.findall(r"(\d+)%", line)
        assert pct and 0 <= int(pct[-1]) <= 1000, line
    assert re.search(r"peak.*GFLOP/s", out)
    # vgg8b on 28x28: conv2 is 128 -> 256 at 28x28 with a 3x3 kernel
    assert re.search(r"conv2\s+128->256 @28x28 3x3", out)
    assert "path: fast" in out
    # the fast path beside the reference: conv2, its max pooling, its decoder's pooling
    # (256 x 28 x 28 to at most 4096 features: an 8x8 window with padding 4)
    section = out[out.index("fast vs reference (vgg8b, batch 2)"):]
    for row in (r"conv2\s+128->256 @28x28 3x3 p1", r"maxpool\s+256 @28x28 2x2 s2",
                r"avgpool\s+256 @28x28 8x8 p4,4"):
        line = re.search(row + r"(\s+\d+\.\d+){4}\s+\d+\.\dx", section)
        assert line, row


def test_bench_ops_gpu_without_gpu_is_a_clear_error():
    from bioplaus.backend import gpu_available

    if gpu_available():
        return
    res = CliRunner().invoke(main, ["bench", "ops", "--device", "gpu", "--repeats", "1"])
    assert res.exit_code != 0 and "--device gpu" in res.output
