"""The frozen run configuration, with the papers' defaults (SPEC §6).

Nothing in the package reads global state: a :class:`Config` is built once
(by the CLI, a recipe or a test) and passed down.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field


#: Weight initialisations (``--init``) and ways to bring inputs to ``--input-size``.
INITS = ("torch", "xavier-uniform")
INPUT_FITS = ("resize", "pad")


class ConfigError(ValueError):
    """An option that is unknown, out of range or does not apply."""


@dataclass(frozen=True)
class Config:
    # what to train
    rule: str = "predsim"
    net: str = "vgg8b"
    dataset: str = "fashion-mnist"
    # net shape (reference defaults; mlp's num_layers defaults to 3, VGG's to 1)
    num_layers: int | None = None
    num_hidden: int = 1024
    feat_mult: float = 1.0
    nonlin: str = "relu"
    # weight initialisation: 'torch' (PyTorch's default, U(+-1/sqrt(fan_in)) for
    # weights and biases) or 'xavier-uniform' (Glorot & Bengio 2010: weights
    # U(+-sqrt(6/(fan_in+fan_out))), biases 0; fixed feedback matrices likewise)
    init: str = "torch"
    dropout: float = 0.0
    bn_momentum: float = 0.1
    bn_eps: float = 1e-5
    # local losses (Nøkland & Eidnes 2019)
    dim_in_decoder: int = 4096
    beta: float = 0.99
    target_proj_size: int = 128
    # fixed random classifiers (Mostafa et al. 2018)
    frc_loss: str = "ce"
    # layer-wise training (Mostafa et al. 2018, Sec. 3): block i trains during
    # epochs i*E+1 .. (i+1)*E, frozen otherwise; the output layer trains with
    # the last block. 0: all blocks at once (the default of both papers).
    layerwise_epochs: int = 0
    # optimisation (reference defaults)
    batch_size: int = 128
    epochs: int = 400
    lr: float = 5e-4
    lr_decay_milestones: tuple = (200, 300, 350, 375)
    lr_decay_fact: float = 0.25
    optim: str = "adam"
    momentum: float = 0.0
    weight_decay: float = 0.0
    # data
    classes_per_batch: int = 0
    classes_per_batch_until_epoch: int = 0
    cutout: bool = False
    length: int = 16
    val_size: int = 0
    train_subset: int = 0
    test_subset: int = 0
    max_steps: int = 0
    data_dir: str | None = None
    # inputs brought to input_size x input_size (0: as stored) by 'resize'
    # (bilinear, half-pixel centres, rounded to uint8) or 'pad' (zeros, centred)
    input_size: int = 0
    input_fit: str = "resize"
    # run
    seed: int = 1
    device: str = "cpu"
    dtype: str = "float32"
    # the reference ops end to end (the equations as written) instead of the
    # fast wing's twins (bioplaus.kernels); the same results, slower
    reference: bool = False
    # TF32 tensor-core products for float32 on a GPU (CuPy); strict float32 when off
    tf32: bool = False
    extra: dict = field(default_factory=dict)

    def replace(self, **kw) -> "Config":
        return dataclasses.replace(self, **kw)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["lr_decay_milestones"] = list(self.lr_decay_milestones)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        """A Config from a recipe's or a checkpoint's table: unknown keys, wrong
        types (a bool or a string for a number, 1.5 for an integer) and
        non-finite numbers are refused (:func:`check_types`); ranges are
        :func:`validate`'s."""
        if not isinstance(d, dict):
            raise ConfigError(f"the configuration must be a table of options, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown configuration keys: {', '.join(unknown)}; "
                              f"known keys: {', '.join(sorted(names))}")
        d = dict(d)
        if isinstance(d.get("lr_decay_milestones"), list):
            d["lr_decay_milestones"] = tuple(d["lr_decay_milestones"])
        check_types(d)
        d = {k: (float(v) if k in _FLOATS and v is not None else v) for k, v in d.items()}
        return cls(**d)


# Options that change the run's results: a resumed run must agree on them.
RESUME_IGNORED = ("epochs", "device", "max_steps", "data_dir", "extra")


def differences(a: Config, b: Config, ignore=RESUME_IGNORED) -> list[str]:
    """Human-readable list of ``key: a -> b`` for every differing option."""
    da, db = a.to_dict(), b.to_dict()
    return [f"{k}: {da[k]!r} (checkpoint) vs {db[k]!r} (now)"
            for k in sorted(da) if k not in ignore and da[k] != db[k]]


def _opt(key: str) -> str:
    return "--" + key.replace("_", "-")


# Typed fields: integers (with their least value), floats, strings, the rest.
_INTS = {"num_hidden": 1, "dim_in_decoder": 1, "target_proj_size": 1, "layerwise_epochs": 0,
         "batch_size": 1, "epochs": 1, "classes_per_batch": 0,
         "classes_per_batch_until_epoch": 0, "length": 0, "val_size": 0, "train_subset": 0,
         "test_subset": 0, "max_steps": 0, "seed": 0, "input_size": 0}
_FLOATS = ("feat_mult", "dropout", "bn_momentum", "bn_eps", "beta", "lr", "lr_decay_fact",
           "momentum", "weight_decay")
_STRS = ("rule", "net", "dataset", "nonlin", "frc_loss", "optim", "device", "dtype", "init",
         "input_fit")
_MEANING_OF_0 = {"layerwise_epochs": "0: all blocks at once", "classes_per_batch": "0: random",
                 "classes_per_batch_until_epoch": "0: always", "val_size": "0: the test set",
                 "train_subset": "0: all", "test_subset": "0: all", "max_steps": "0: no limit",
                 "length": "0: no hole", "input_size": "0: as stored"}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _err(key: str, value, right: str) -> ConfigError:
    shown = repr(value) if not isinstance(value, str) or len(value) < 80 else repr(value[:77] + "...")
    return ConfigError(f"{_opt(key)} must be {right}, got {shown} "
                       f"({type(value).__name__}; recipe key {key})")


def check_types(d: dict) -> None:
    """Refuse values of the wrong type (the first one found, named)."""
    for key, v in d.items():
        if key in _INTS:
            if not _is_int(v):
                raise _err(key, v, "an integer")
        elif key == "num_layers":
            if v is not None and not _is_int(v):
                raise _err(key, v, "an integer (or absent: the net's default)")
        elif key in _FLOATS:
            if not (_is_int(v) or isinstance(v, float)):
                raise _err(key, v, "a number")
            if not math.isfinite(float(v)):
                raise _err(key, v, "a finite number")
        elif key in _STRS:
            if not isinstance(v, str):
                raise _err(key, v, "a string")
        elif key == "data_dir":
            if v is not None and not isinstance(v, str):
                raise _err(key, v, "a path (a string)")
        elif key in ("cutout", "reference", "tf32"):
            if not isinstance(v, bool):
                raise _err(key, v, "true or false")
        elif key == "lr_decay_milestones":
            if not isinstance(v, (tuple, list)) or not all(_is_int(m) for m in v):
                raise _err(key, v, "a list of integers (epochs)")
        elif key == "extra":
            if not isinstance(v, dict):
                raise _err(key, v, "a table")


def check_seconds(option: str, value) -> float:
    """A positive, finite number of seconds (``--checkpoint-every``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and value > 0):
        raise ConfigError(f"{option} must be a positive, finite number of seconds, got {value!r}")
    return float(value)


def validate(cfg: Config) -> None:
    """Type and range checks that do not depend on the rule or net registries."""
    check_types(cfg.to_dict() | {"lr_decay_milestones": cfg.lr_decay_milestones})
    for key, least in _INTS.items():
        v = getattr(cfg, key)
        if v < least:
            zero = f" ({_MEANING_OF_0[key]})" if key in _MEANING_OF_0 else ""
            raise ConfigError(f"{_opt(key)} must be >= {least}{zero}, got {v} (recipe key {key})")
    ms = list(cfg.lr_decay_milestones)
    checks = [
        (cfg.num_layers is None or cfg.num_layers >= 1,
         f"--num-layers must be >= 1, got {cfg.num_layers}"),
        (0.0 <= cfg.dropout < 1.0, f"--dropout must be in [0, 1), got {cfg.dropout}"),
        (0.0 <= cfg.beta <= 1.0, f"--beta must be in [0, 1], got {cfg.beta}"),
        (cfg.lr > 0, f"--lr must be positive, got {cfg.lr}"),
        (cfg.lr_decay_fact > 0, f"--lr-decay-fact must be positive (the learning rate is "
                                f"multiplied by it), got {cfg.lr_decay_fact}"),
        (cfg.feat_mult > 0, f"--feat-mult must be positive, got {cfg.feat_mult}"),
        (0.0 <= cfg.bn_momentum <= 1.0, f"bn_momentum must be in [0, 1], got {cfg.bn_momentum}"),
        (cfg.bn_eps > 0, f"bn_eps must be positive, got {cfg.bn_eps}"),
        (0.0 <= cfg.momentum < 1.0, f"--momentum must be in [0, 1), got {cfg.momentum}"),
        (cfg.weight_decay >= 0, f"--weight-decay must be >= 0, got {cfg.weight_decay}"),
        (cfg.optim in ("adam", "amsgrad", "sgd"),
         f"--optim must be one of adam, amsgrad, sgd, got {cfg.optim!r}"),
        (cfg.nonlin in ("relu", "leakyrelu", "tanh"),
         f"--nonlin must be relu, leakyrelu or tanh, got {cfg.nonlin!r}"),
        (cfg.init in INITS, f"--init must be one of {', '.join(INITS)}, got {cfg.init!r}"),
        (cfg.input_fit in INPUT_FITS,
         f"--input-fit must be one of {', '.join(INPUT_FITS)}, got {cfg.input_fit!r}"),
        (cfg.frc_loss in ("ce", "hinge"), f"--frc-loss must be ce or hinge, got {cfg.frc_loss!r}"),
        (cfg.dtype in ("float32", "float64"), f"dtype must be float32 or float64, got {cfg.dtype!r}"),
        (cfg.device in ("cpu", "gpu"), f"--device must be cpu or gpu, got {cfg.device!r}"),
        (not cfg.tf32 or cfg.device == "gpu",
         "--tf32 needs --device gpu: TF32 is a tensor-core mode of NVIDIA GPUs (CuPy's float32 "
         "products); NumPy on the CPU has none, so it is refused rather than ignored"),
        (not cfg.tf32 or cfg.dtype == "float32",
         f"--tf32 applies to float32 products; this run's dtype is {cfg.dtype}"),
        (all(m >= 1 for m in ms), f"--lr-decay-milestones must be positive epochs, got {ms}"),
        (all(a < b for a, b in zip(ms, ms[1:])),
         f"--lr-decay-milestones must increase, got {ms}"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)
