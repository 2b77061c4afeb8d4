"""The pages in rules/ stay equal to the registry (issue item 5).

* one page ``rules/<name>.md`` per registry name, and no other page;
* every page has its equations (display LaTeX), its source, the functions
  that compute each line, and a section on biological plausibility;
* every backticked ``bioplaus.…`` dotted name on any page resolves to an
  existing module attribute;
* every function the registry lists for a rule is cited on that rule's page;
* rules/README.md has one index row per rule, linking its page, with the
  registry's family.
"""
import importlib
import re
from pathlib import Path

import pytest

from bioplaus.rules.registry import RULES

PAGES = Path(__file__).resolve().parents[2] / "rules"
CITED = re.compile(r"`(bioplaus(?:\.[A-Za-z_][A-Za-z0-9_]*)+)`")


def page(name):
    return (PAGES / f"{name}.md").read_text(encoding="utf-8")


def resolve(dotted):
    """Import the longest module prefix of ``dotted`` and walk the rest as attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)  # AttributeError: the page names something missing
        return obj
    raise ImportError(dotted)


def test_one_page_per_rule_and_no_other():
    pages = {p.stem for p in PAGES.glob("*.md")} - {"README"}
    assert pages == set(RULES)


@pytest.mark.parametrize("name", list(RULES))
def test_page_has_its_parts(name):
    text = page(name)
    assert text.splitlines()[0].startswith(f"# `{name}`")
    for heading in ("## Equations", "## Biologically plausible?", "## Checks"):
        assert heading in text, f"{name}.md lacks {heading!r}"
    assert "**Source:**" in text
    assert text.count("$$") >= 2 and text.count("$$") % 2 == 0, "display equations"
    assert CITED.search(text), "no function cited"


@pytest.mark.parametrize("name", ["README", *RULES])
def test_every_cited_name_exists(name):
    cited = set(CITED.findall(page(name)))
    for dotted in sorted(cited):
        try:
            resolve(dotted)
        except (ImportError, AttributeError) as e:
            pytest.fail(f"rules/{name}.md cites `{dotted}`, which does not exist ({e!r})")


@pytest.mark.parametrize("name", list(RULES))
def test_registry_functions_are_cited_and_exist(name):
    info = RULES[name]
    assert info.functions, f"the registry lists no function for {name}"
    cited = set(CITED.findall(page(name)))
    for dotted in info.functions:
        assert callable(resolve(dotted)), dotted
        assert dotted in cited, f"rules/{name}.md does not cite `{dotted}`"


def test_readme_indexes_every_rule():
    rows = {}
    for line in page("README").splitlines():
        m = re.match(r"\| \[`([^`]+)`\]\(([^)]+)\) \| (\w+) \|", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3))
    assert set(rows) == set(RULES)
    for name, (link, family) in rows.items():
        assert link == f"{name}.md"
        assert family == RULES[name].family, name
