"""The pages in rules/ stay equal to the registry (issue item 5).

* one page ``rules/<name>.md`` per registry name, and no other page;
* every page has its equations (display LaTeX), its source, the functions
  that compute each line, and a section on biological plausibility;
* every backticked ``bioplaus.…`` dotted name on any page resolves to an
  existing module attribute;
* every function the registry lists for a rule is cited on that rule's page;
* rules/README.md has one index row per rule, linking its page, with the
  registry's family;
* every citation links its file and, for a function or class, its line
  range: ``[`bioplaus.ops.norm.batchnorm_forward`](../bioplaus/ops/norm.py#L10-L40)``,
  the range exactly the definition's ``def`` line to its last line (found
  with ast); the cited code is the reference path (nothing in bioplaus/fast/).

``python3 tests/rules/test_pages.py --write`` links every citation of every
page and regenerates the ranges.
"""
import ast
import importlib
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))

from bioplaus.rules.registry import RULES  # noqa: E402

PAGES = ROOT / "rules"
CITED = re.compile(r"`(bioplaus(?:\.[A-Za-z_][A-Za-z0-9_]*)+)`")
# a linked citation, or a bare one (the link part then None)
CITATION = re.compile(r"\[`(bioplaus(?:\.[A-Za-z_][A-Za-z0-9_]*)+)`\]\(([^)#\s]+)(?:#L(\d+)-L(\d+))?\)"
                      r"|`(bioplaus(?:\.[A-Za-z_][A-Za-z0-9_]*)+)`")


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


def locate(dotted):
    """``(file relative to the repository, first line, last line)`` of a cited name:
    the module's file and, for a function, class or assignment, its definition's
    lines (None, None for a whole module)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            mod = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        break
    else:
        raise ImportError(dotted)
    path = Path(mod.__file__).resolve()
    rel = path.relative_to(ROOT).as_posix()
    attrs = parts[cut:]
    if not attrs:
        return rel, None, None
    body = ast.parse(path.read_text(encoding="utf-8")).body
    node = None
    for name in attrs:
        node = next((n for n in body if _defines(n, name)), None)
        if node is None:
            raise AttributeError(f"{rel} defines no {name!r} (cited as `{dotted}`)")
        body = getattr(node, "body", [])
    return rel, node.lineno, node.end_lineno


def _defines(node, name):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return node.name == name
    if isinstance(node, ast.Assign):
        return any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
    if isinstance(node, ast.AnnAssign):
        return isinstance(node.target, ast.Name) and node.target.id == name
    return False


def link(dotted):
    rel, first, last = locate(dotted)
    target = f"../{rel}" + (f"#L{first}-L{last}" if first is not None else "")
    return f"[`{dotted}`]({target})"


def citations(text):
    """``(dotted, link target, first, last)`` of every citation; bare ones have target None."""
    out = []
    for m in CITATION.finditer(text):
        if m.group(1):
            first = int(m.group(3)) if m.group(3) else None
            last = int(m.group(4)) if m.group(4) else None
            out.append((m.group(1), m.group(2), first, last))
        else:
            out.append((m.group(5), None, None, None))
    return out


def linked(text):
    """``text`` with every citation linked to its current file and line range."""
    return CITATION.sub(lambda m: link(m.group(1) or m.group(5)), text)


ALL_PAGES = ["README", *RULES]


@pytest.mark.parametrize("name", ALL_PAGES)
def test_every_citation_links_its_definition(name):
    cites = citations(page(name))
    assert cites, f"rules/{name}.md cites nothing"
    for dotted, target, first, last in cites:
        assert target is not None, f"rules/{name}.md: `{dotted}` is not linked " \
            "(run python3 tests/rules/test_pages.py --write)"
        assert not dotted.startswith("bioplaus.fast"), \
            f"rules/{name}.md cites `{dotted}` of the fast wing; cite the reference twin"
        rel, want_first, want_last = locate(dotted)
        assert (PAGES / target).resolve() == (ROOT / rel).resolve(), \
            f"rules/{name}.md links `{dotted}` to {target}, but it is in {rel}"
        assert (PAGES / target).is_file(), f"rules/{name}.md: {target} does not exist"
        assert (first, last) == (want_first, want_last), \
            f"rules/{name}.md: `{dotted}` is at lines {want_first}-{want_last} of {rel}, the " \
            f"link says {first}-{last} (run python3 tests/rules/test_pages.py --write)"


def test_the_page_links_find_the_definitions():
    # the checker itself: a known function's range is its def line to its last line
    rel, first, last = locate("bioplaus.rules.local.pred_loss")
    lines = (ROOT / rel).read_text(encoding="utf-8").splitlines()
    assert lines[first - 1].startswith("def pred_loss(")
    assert lines[last - 1].strip() and (last == len(lines) or not lines[last].startswith(" "))
    assert locate("bioplaus.feedback") == ("bioplaus/feedback.py", None, None)
    text = "`bioplaus.rules.local.pred_loss` and [`bioplaus.feedback`](../x.py)"
    assert citations(linked(text)) == [("bioplaus.rules.local.pred_loss", f"../{rel}", first, last),
                                      ("bioplaus.feedback", "../bioplaus/feedback.py", None, None)]


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


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python3 tests/rules/test_pages.py --write  (links every citation of "
                 "rules/*.md to its file and current line range)")
    for name in ALL_PAGES:
        path = PAGES / f"{name}.md"
        old = path.read_text(encoding="utf-8")
        new = linked(old)
        if new != old:
            path.write_text(new, encoding="utf-8")
            print(f"rewrote {path.relative_to(ROOT)}")
