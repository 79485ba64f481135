"""The examples in the docstrings of the public API run, and show what they say (kornia's habit):
every module of the packages is searched, so a new example is collected without a list."""

import doctest
import importlib

import pytest

from tests.conftest import ROOT

PACKAGES = ("common", "data", "mpn", "epn", "ipn", "pipeline")
MODULES = sorted(
    ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    for package in PACKAGES
    for path in (ROOT / package).rglob("*.py")
    if ">>>" in path.read_text()
)


def test_the_public_api_has_examples():
    assert {"pipeline.inference.inpainter", "pipeline.model", "common.ops", "data.io"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(module, name) if t.examples]
    assert tests
    for test in tests:
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, f"{results.failed} of {results.attempted} examples in {name} failed (output above)"
