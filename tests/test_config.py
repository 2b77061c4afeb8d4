"""Every recipe key and option is checked for type and range, with a message
naming the key, the value and what would be right."""
import pytest
from click.testing import CliRunner

from bioplaus.cli import main
from bioplaus.config import Config, ConfigError, validate
from bioplaus.recipes import RecipeError, load_recipe

BAD_RECIPE_VALUES = [
    ('lr = "fast"', r"--lr must be a number, got 'fast' \(str; recipe key lr\)"),
    ('dropout = "0.1"', r"--dropout must be a number, got '0.1'"),
    ("lr = true", r"--lr must be a number, got True \(bool"),
    ("epochs = 1.5", r"--epochs must be an integer, got 1.5"),
    ("batch_size = 12.5", r"--batch-size must be an integer, got 12.5"),
    ("lr_decay_milestones = [1.5, 2.7]", r"--lr-decay-milestones must be a list of integers"),
    ("lr_decay_milestones = [30, 20]", r"--lr-decay-milestones must increase, got \[30, 20\]"),
    ("lr_decay_milestones = [0, 20]", r"--lr-decay-milestones must be positive epochs"),
    ("max_steps = -1", r"--max-steps must be >= 0 \(0: no limit\), got -1"),
    ("test_subset = -5", r"--test-subset must be >= 0 \(0: all\), got -5"),
    ("lr_decay_fact = -0.5", r"--lr-decay-fact must be positive"),
    ("lr = inf", r"--lr must be a finite number, got inf"),
    ("lr = nan", r"--lr must be a finite number, got nan"),
    ("num_hidden = 0", r"--num-hidden must be >= 1, got 0"),
    ("cutout = 1", r"--cutout must be true or false, got 1"),
    ("seed = -1", r"--seed must be >= 0, got -1"),
    ("num_layers = 2.0", r"--num-layers must be an integer"),
    ('nonlin = "sigmoid"', r"--nonlin must be relu, leakyrelu or tanh, got 'sigmoid'"),
]


def _recipe(tmp_path, text: str, name="r.toml"):
    p = tmp_path / name
    p.write_text('[train]\nnet = "mlp"\n' + text + "\n")
    return p


@pytest.mark.parametrize("line, pattern", BAD_RECIPE_VALUES, ids=[c[0] for c in BAD_RECIPE_VALUES])
def test_bad_recipe_values_are_refused_naming_the_key(tmp_path, line, pattern):
    p = _recipe(tmp_path, line)
    with pytest.raises(RecipeError, match=pattern) as exc:
        load_recipe(p)
    assert str(p) in str(exc.value)


@pytest.mark.parametrize("raw, pattern", [
    (b'[train]\nnet = "ml\xff\xfep"\n', r"not UTF-8 text \(byte 17"),
    (b"[train]\nx = " + b"[" * 100000 + b"]" * 100000 + b"\n", r"nested too deeply"),
    (b'train = 3\n', r"train must be a table"),
    (b'[train\n', r"not valid TOML"),
])
def test_unreadable_recipes_are_refused_with_a_message(tmp_path, raw, pattern):
    p = tmp_path / "r.toml"
    p.write_bytes(raw)
    with pytest.raises(RecipeError, match=pattern):
        load_recipe(p)


@pytest.mark.parametrize("args, message", [
    (["--max-steps", "-1"], "--max-steps must be >= 0 (0: no limit), got -1"),
    (["--test-subset", "-5"], "--test-subset must be >= 0 (0: all), got -5"),
    (["--lr", "nan"], "--lr must be a finite number, got nan"),
    (["--lr-decay-fact", "-1"], "--lr-decay-fact must be positive"),
    (["--checkpoint-every", "nan"], "--checkpoint-every must be a positive, finite number of seconds, got nan"),
    (["--checkpoint-every", "0"], "--checkpoint-every must be a positive, finite number of seconds"),
    (["--lr-decay-milestones", "5,3"], "--lr-decay-milestones must increase, got [5, 3]"),
])
def test_bad_options_are_refused(tmp_path, args, message):
    res = CliRunner().invoke(main, ["train", "--net", "mlp", "--out", str(tmp_path / "o"), *args])
    assert res.exit_code != 0
    assert message in res.output, res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "o" / "checkpoint.h5").exists()


def test_good_values_pass_and_integers_are_accepted_for_floats():
    cfg = Config.from_dict({"lr": 1, "dropout": 0, "lr_decay_milestones": [10, 20]})
    validate(cfg)
    assert isinstance(cfg.lr, float) and cfg.lr_decay_milestones == (10, 20)
    with pytest.raises(ConfigError, match="unknown configuration keys: lrr"):
        Config.from_dict({"lrr": 1})
