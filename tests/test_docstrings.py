"""Every public name has a docstring and a place in the API reference (docs/api/), which
mkdocstrings generates from the docstrings.

Public: each name in the ``__all__`` of the documented modules, and the public methods
and properties those classes define themselves (an override of a documented base method,
such as ``forward`` of a torch module, may rely on the base's docstring).
"""

import dataclasses
import importlib
import inspect
import re
from pathlib import Path

import pytest

# The modules whose ``__all__`` the API reference documents (docs/api/*.md).
DOCUMENTED = ("rnnlab", "rnnlab.nn", "rnnlab.reference", "rnnlab.export")
API_PAGES = Path(__file__).parents[1] / "docs" / "api"


def _own_doc(obj) -> str:
    """The object's own docstring; a dataclass's generated signature line is none."""
    if isinstance(obj, type):
        doc = obj.__dict__.get("__doc__") or ""
        if dataclasses.is_dataclass(obj) and doc.startswith(f"{obj.__name__}("):
            return ""
        return doc.strip()
    return (getattr(obj, "__doc__", None) or "").strip()


def _members(cls: type) -> list[str]:
    """The public methods and properties ``cls`` itself defines."""
    return [
        name
        for name, value in vars(cls).items()
        if not name.startswith("_")
        and (isinstance(value, (staticmethod, classmethod, property)) or inspect.isfunction(value))
    ]


def _undocumented(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    missing = [] if _own_doc(module) else [module_name]
    for name in module.__all__:
        if name == "__version__":
            continue
        obj = getattr(module, name)
        if not _own_doc(obj):
            missing.append(f"{module_name}.{name}")
        if isinstance(obj, type):
            missing += [
                f"{module_name}.{name}.{member}"
                for member in _members(obj)
                if not inspect.getdoc(getattr(obj, member))
            ]
    return missing


@pytest.mark.parametrize("module_name", DOCUMENTED)
def test_every_public_name_has_a_docstring(module_name):
    missing = _undocumented(module_name)
    assert not missing, f"public names without a docstring: {missing}"


def _documented_names() -> set[str]:
    """The last component of every ``::: target`` of the API pages, and the names listed
    in their ``members: [...]`` options."""
    names = set()
    for page in API_PAGES.glob("*.md"):
        text = page.read_text()
        names |= {target.rsplit(".", 1)[-1] for target in re.findall(r"^::: (\S+)", text, re.M)}
        for listed in re.findall(r"^\s+members: \[(.*)\]", text, re.M):
            names |= {name.strip() for name in listed.split(",")}
    return names


@pytest.mark.parametrize("module_name", DOCUMENTED)
def test_every_public_name_is_in_the_api_reference(module_name):
    public = set(importlib.import_module(module_name).__all__) - {"__version__"}
    missing = sorted(public - _documented_names())
    assert not missing, f"not in any page of docs/api/: {missing}"
