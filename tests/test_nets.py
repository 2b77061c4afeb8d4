"""Net shapes and parameter counts (SPEC §5), and `bioplaus nets` / `bioplaus rules`."""
import pytest
from click.testing import CliRunner

from bioplaus.cli import main
from bioplaus.net.spec import NetError, build_net
from bioplaus.rules.registry import RULES


@pytest.mark.parametrize("net, shape, kw, millions", [
    ("vgg8b", (1, 28, 28), {}, 7.3),
    ("vgg8b", (3, 32, 32), {}, 8.9),
    ("mlp", (1, 28, 28), {}, 2.9),
    ("mlp", (3, 32, 32), {"num_hidden": 3000}, 27.3),
])
def test_parameter_counts_match_the_paper(net, shape, kw, millions):
    spec = build_net(net, shape, 10, **kw)
    assert round(spec.encoder_param_count() / 1e6, 1) == millions


def test_vgg8b_layout_follows_the_reference():
    spec = build_net("vgg8b", (1, 28, 28), 10)
    assert [b.name for b in spec.blocks] == [
        "features.0", "features.1", "features.3", "features.4", "features.6", "features.8",
        "classifier.layers.0"]
    assert [b.n_out for b in spec.blocks] == [128, 256, 256, 512, 512, 512, 1024]
    assert [b.pool for b in spec.blocks[:6]] == [False, True, False, True, True, True]
    assert [b.out_hw for b in spec.blocks[:6]] == [28, 28, 14, 14, 7, 3]
    assert spec.out_name == "classifier.layer_out" and spec.out_in == 1024
    assert spec.blocks[6].n_in == 512 and spec.blocks[6].flatten_in


def test_stl10_first_layer_is_7x7_stride_2():
    spec = build_net("vgg8b", (3, 96, 96), 10)
    b = spec.blocks[0]
    assert (b.kernel, b.stride, b.pad, b.out_hw) == (7, 2, 3, 48)
    assert build_net("vgg8b", (3, 32, 32), 10).blocks[0].kernel == 3


def test_feat_mult_and_num_layers():
    spec = build_net("vgg11b", (3, 32, 32), 100, feat_mult=0.5, num_layers=2)
    assert spec.blocks[0].n_out == 64 and spec.blocks[-1].name == "classifier.layers.1"
    assert build_net("vgg8b", (1, 28, 28), 10, num_layers=0).out_name == "classifier"
    assert len(build_net("mlp", (1, 28, 28), 10, num_layers=5).blocks) == 5


@pytest.mark.parametrize("name, kw, msg", [
    ("resnet", {}, "unknown net 'resnet'; known nets: mlp"),
    ("mlp", {"num_layers": 0}, "--num-layers must be >= 1"),
    ("vgg8b", {"feat_mult": 0}, "--feat-mult must be positive"),
])
def test_bad_nets(name, kw, msg):
    with pytest.raises(NetError, match=msg.replace("(", r"\(")):
        build_net(name, (1, 28, 28), 10, **kw)


def test_vgg_too_deep_for_small_inputs():
    with pytest.raises(NetError, match="too small"):
        build_net("vgg19", (1, 8, 8), 10)


def test_cli_nets_and_rules():
    res = CliRunner().invoke(main, ["nets", "--dataset", "cifar10"])
    assert res.exit_code == 0
    line = next(ln for ln in res.output.splitlines() if ln.startswith("vgg8b "))
    assert "8.90M" in line
    res = CliRunner().invoke(main, ["rules"])
    assert res.exit_code == 0
    for name in RULES:
        assert any(ln.startswith(name + " ") for ln in res.output.splitlines()), name
