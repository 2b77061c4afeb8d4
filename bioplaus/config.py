"""The frozen run configuration, with the papers' defaults (SPEC §6).

Nothing in the package reads global state: a :class:`Config` is built once
(by the CLI, a recipe or a test) and passed down.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field


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
    # run
    seed: int = 1
    device: str = "cpu"
    dtype: str = "float32"
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
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown configuration keys: {', '.join(unknown)}; "
                              f"known keys: {', '.join(sorted(names))}")
        d = dict(d)
        if "lr_decay_milestones" in d:
            d["lr_decay_milestones"] = tuple(int(m) for m in d["lr_decay_milestones"])
        return cls(**d)


# Options that change the run's results: a resumed run must agree on them.
RESUME_IGNORED = ("epochs", "device", "max_steps", "data_dir", "extra")


def differences(a: Config, b: Config, ignore=RESUME_IGNORED) -> list[str]:
    """Human-readable list of ``key: a -> b`` for every differing option."""
    da, db = a.to_dict(), b.to_dict()
    return [f"{k}: {da[k]!r} (checkpoint) vs {db[k]!r} (now)"
            for k in sorted(da) if k not in ignore and da[k] != db[k]]


def validate(cfg: Config) -> None:
    """Range checks that do not depend on the rule or net registries."""
    checks = [
        (0.0 <= cfg.dropout < 1.0, f"--dropout must be in [0, 1), got {cfg.dropout}"),
        (0.0 <= cfg.beta <= 1.0, f"--beta must be in [0, 1], got {cfg.beta}"),
        (cfg.batch_size >= 1, f"--batch-size must be >= 1, got {cfg.batch_size}"),
        (cfg.epochs >= 1, f"--epochs must be >= 1, got {cfg.epochs}"),
        (cfg.lr > 0, f"--lr must be positive, got {cfg.lr}"),
        (cfg.dim_in_decoder >= 1, f"--dim-in-decoder must be >= 1, got {cfg.dim_in_decoder}"),
        (cfg.optim in ("adam", "amsgrad", "sgd"),
         f"--optim must be one of adam, amsgrad, sgd, got {cfg.optim!r}"),
        (cfg.nonlin in ("relu", "leakyrelu"),
         f"--nonlin must be relu or leakyrelu, got {cfg.nonlin!r}"),
        (cfg.frc_loss in ("ce", "hinge"), f"--frc-loss must be ce or hinge, got {cfg.frc_loss!r}"),
        (cfg.dtype in ("float32", "float64"), f"dtype must be float32 or float64, got {cfg.dtype!r}"),
        (cfg.device in ("cpu", "gpu"), f"--device must be cpu or gpu, got {cfg.device!r}"),
        (cfg.seed >= 0, f"--seed must be >= 0, got {cfg.seed}"),
        (cfg.layerwise_epochs >= 0, f"--layerwise-epochs must be >= 0, got {cfg.layerwise_epochs}"),
        (list(cfg.lr_decay_milestones) == sorted(cfg.lr_decay_milestones),
         f"--lr-decay-milestones must increase, got {list(cfg.lr_decay_milestones)}"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)
