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


# -- the commands the README and docs/ show -------------------------------------------------------

CONFIGS = {"pipeline.train": "train", "pipeline.inpaint": "inpaint", "pipeline.evaluate": "evaluate",
           "pipeline.export": "export", "pipeline.serve": "serve", "pipeline.benchmark": "benchmark",
           "pipeline.benchmark_peers": "benchmark_peers", "data.preview": "preview"}  # fmt: skip
DOCUMENTS = ["README.md", "MODEL_CARD.md", *(f"docs/{p.name}" for p in sorted((ROOT / "docs").glob("*.md")))]


def _shown_commands():
    """``(document, words)`` for each command line of the documents' ``bash`` blocks that runs
    ``blindfill`` or a command of :data:`CONFIGS` (continuation lines joined, comments and shell
    redirections dropped, placeholders such as ``<time>`` filled in as a user would)."""
    import re
    import shlex

    for document in DOCUMENTS:
        for block in re.findall(r"```(?:bash|sh)\n(.*?)```", (ROOT / document).read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                for part in line.split("&&"):
                    words = shlex.split(re.sub(r"<[a-z _-]+>", "x", part), comments=True)
                    words = words[: next((i for i, w in enumerate(words) if w in (">", "|", "2>")), len(words))]
                    if words and words[0].endswith("blindfill"):
                        yield document, words
                    elif len(words) > 2 and words[0].endswith("python") and words[1] == "-m" and words[2] in CONFIGS:
                        yield document, words[2:]


SHOWN = list(_shown_commands())


def test_the_documents_show_commands():
    assert len(SHOWN) > 40 and {words[0] for _, words in SHOWN} >= {"pipeline.train", "pipeline.inpaint"}


@pytest.mark.parametrize("document, words", SHOWN, ids=[f"{d}:{' '.join(w)[:60]}" for d, w in SHOWN])
def test_every_shown_command_parses(document, words):
    """Each ``blindfill`` line parses with the command's own parser, and each ``python -m`` line
    composes its config (every key and value checked by the schemas), as ``--cfg job`` would."""
    if words[0].endswith("blindfill"):
        from pipeline.console import PASSED_THROUGH, build_parser

        if len(words) > 1 and words[1] in PASSED_THROUGH:
            words = ["python", "-m", f"pipeline.{words[1]}", *words[2:]]
        else:
            build_parser().parse_args(words[1:])  # exits (status 2) on a wrong line
            return
        words = words[2:]
    from hydra import compose, initialize_config_module

    overrides = [w for w in words[1:] if not w.startswith(("--", "hydra.")) and "=" in w]
    with initialize_config_module(config_module="conf", version_base="1.3"):
        compose(CONFIGS[words[0]], overrides)
