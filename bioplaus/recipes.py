"""Recipes: TOML files in runs/ that pin every option of a paper's run.

A recipe has a ``[train]`` table (keys are :class:`~bioplaus.config.Config`
fields) and an optional ``[paper]`` table (the paper's reported test error
and where it is reported)::

    [train]
    dataset = "fashion-mnist"
    net = "mlp"
    rule = "predsim"
    ...

    [paper]
    error = 8.54
    source = "Nøkland & Eidnes 2019, Table 3"
"""
from __future__ import annotations

import os
import tomllib
from typing import NamedTuple

from bioplaus.config import Config, ConfigError


class RecipeError(ValueError):
    """A recipe file that cannot be used; the message names the file."""


class Recipe(NamedTuple):
    path: str
    config: dict
    paper: dict
    notes: str


def load_recipe(path) -> Recipe:
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise RecipeError(f"recipe {path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"recipe {path}: not valid TOML ({exc})") from None
    unknown = sorted(set(doc) - {"train", "paper", "notes"})
    if unknown:
        raise RecipeError(f"recipe {path}: unknown tables {unknown}; expected [train] and [paper]")
    if "train" not in doc:
        raise RecipeError(f"recipe {path}: no [train] table")
    try:
        Config.from_dict(doc["train"])
    except (ConfigError, TypeError) as exc:
        raise RecipeError(f"recipe {path}: {exc}") from None
    return Recipe(path, dict(doc["train"]), dict(doc.get("paper", {})), str(doc.get("notes", "")))
