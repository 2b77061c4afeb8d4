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

from bioplaus.config import Config, ConfigError, validate


class RecipeError(ValueError):
    """A recipe file that cannot be used; the message names the file."""


class Recipe(NamedTuple):
    path: str
    config: dict
    paper: dict
    notes: str


MAX_BYTES = 1 << 20  # a recipe is a few hundred bytes


def load_recipe(path) -> Recipe:
    """Read and check a recipe: UTF-8 TOML, a ``[train]`` table of typed,
    in-range options (:meth:`Config.from_dict`, :func:`~bioplaus.config.validate`)."""
    path = os.fspath(path)
    try:
        if os.path.isdir(path):
            raise RecipeError(f"recipe {path}: is a directory; expected a .toml file")
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise RecipeError(f"recipe {path}: no such file") from None
    except OSError as exc:
        raise RecipeError(f"recipe {path}: cannot be read ({exc.strerror or exc})") from None
    if len(raw) > MAX_BYTES:
        raise RecipeError(f"recipe {path}: larger than {MAX_BYTES:,} bytes; a recipe is a short "
                          "TOML file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(f"recipe {path}: not UTF-8 text (byte {exc.start}: "
                          f"{raw[exc.start:exc.start + 1]!r}); TOML files are UTF-8") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"recipe {path}: not valid TOML ({exc})") from None
    except RecursionError:
        raise RecipeError(f"recipe {path}: arrays or tables nested too deeply to be a "
                          "recipe (a recipe's values are numbers, strings and flat lists)") from None
    unknown = sorted(set(doc) - {"train", "paper", "notes"})
    if unknown:
        raise RecipeError(f"recipe {path}: unknown tables {unknown}; expected [train] and [paper]")
    if "train" not in doc:
        raise RecipeError(f"recipe {path}: no [train] table")
    for table in ("train", "paper"):
        if table in doc and not isinstance(doc[table], dict):
            raise RecipeError(f"recipe {path}: {table} must be a table ([{table}]), got "
                              f"{type(doc[table]).__name__}")
    try:
        validate(Config.from_dict(doc["train"]))
    except (ConfigError, TypeError) as exc:
        raise RecipeError(f"recipe {path}: {exc}") from None
    return Recipe(path, dict(doc["train"]), dict(doc.get("paper", {})), str(doc.get("notes", "")))
