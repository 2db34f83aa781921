"""Every `iss_keras.<name>` the README and the pages mention exists."""

import glob
import importlib
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md", "ptb/README.md", "rhns/README.md", "sentiment/README.md",
         "bidaf/README.md", "examples/README.md"] + sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))


def resolve(dotted):
    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=1):
        if hasattr(obj, part):
            obj = getattr(obj, part)
        else:  # a submodule not imported by the package
            obj = importlib.import_module(".".join(parts[:i + 1]))
    return obj


def test_every_documented_name_exists():
    names = set()
    for page in PAGES:
        text = open(os.path.join(ROOT, page)).read()
        names |= set(re.findall(r"\biss_keras(?:\.[A-Za-z_][A-Za-z0-9_]*)+", text))
    assert len(names) > 10
    missing = []
    for name in sorted(names):
        try:
            resolve(name)
        except (ImportError, AttributeError):
            missing.append(name)
    assert not missing, f"documented but missing: {missing}"


def test_all_lists_public_names_that_exist():
    import iss_keras

    assert all(not n.startswith("_") and hasattr(iss_keras, n) for n in iss_keras.__all__)


def test_names_in_the_readme_table_exist():
    import iss_keras

    rows = [line for line in open(os.path.join(ROOT, "README.md")) if line.startswith("| ")]
    table = [row.split("|")[2] for row in rows if len(row.split("|")) > 3]
    names = {n for cell in table for n in re.findall(r"`([A-Za-z_][A-Za-z0-9_.]*)`", cell)}
    assert {"ISSRegularizer", "shrink", "export_tflite"} <= names
    missing = [n for n in sorted(names)
               if not (n.startswith("iss_keras.") or hasattr(iss_keras, n.split(".")[0]))]
    assert not missing, f"README names missing from iss_keras: {missing}"


def test_architecture_page_names_every_module():
    """Each module by its path, or by its file name in its own package's paragraph."""
    text = open(os.path.join(ROOT, "docs", "architecture.md")).read()
    paragraphs = text.split("\n\n")
    missing = []
    for path in sorted(glob.glob(os.path.join(ROOT, "iss_keras", "**", "*.py"), recursive=True)):
        rel = os.path.relpath(path, ROOT).replace(os.sep, "/")
        parts = rel.split("/")
        in_its_section = len(parts) == 3 and any(
            f"`iss_keras/{parts[1]}/`" in p and f"`{parts[2]}`" in p for p in paragraphs)
        if f"`{rel}`" not in text and not in_its_section:
            missing.append(rel)
    assert not missing, f"docs/architecture.md does not name {missing}"
