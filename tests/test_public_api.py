"""The public API in tiers: a short top level, each name exported from one place."""

import importlib

import iss_keras

PACKAGES = ("iss_keras.sparsity", "iss_keras.models", "iss_keras.tasks", "iss_keras.training",
            "iss_keras.datasets", "iss_keras.datasets.squad")


def test_the_top_level_is_short_and_each_name_is_exported_once():
    assert 16 <= len(iss_keras.__all__) <= 24, iss_keras.__all__
    exported = {name: "iss_keras" for name in iss_keras.__all__}
    for package in PACKAGES:
        for name in importlib.import_module(package).__all__:
            assert name not in exported, f"{name} is exported by {exported[name]} and {package}"
            exported[name] = package


def test_every_top_level_name_resolves_to_its_defining_module():
    for name in iss_keras.__all__:
        obj = getattr(iss_keras, name)
        assert obj.__module__ == iss_keras._EXPORTS[name], (name, obj.__module__)
    # What moved down a tier is no longer at the top (it lives in its module).
    moved = (("RHNCell", "iss_keras.models"), ("L1", None), ("group_lasso", "iss_keras.groups"),
             ("RowGroupLasso", "iss_keras.sparsity"), ("verify_equivalence", "iss_keras.rebuild"))
    for name, home in moved:
        assert not hasattr(iss_keras, name), name
        assert home is None or hasattr(importlib.import_module(home), name), (name, home)
