"""The architecture contracts of pyproject.toml's ``[tool.importlinter]`` (``lint-imports`` in
``make lint``) hold, and each catches the import it exists to forbid: every import counts,
at the top of a module, inside a function or under ``TYPE_CHECKING``."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

grimp = pytest.importorskip("grimp")
pytest.importorskip("importlinter")

import importlinter.api  # noqa: E402,F401  (configures import-linter's adapters)
from importlinter.application import use_cases  # noqa: E402
from importlinter.contracts.acyclic_siblings import AcyclicSiblingsContract  # noqa: E402
from importlinter.contracts.forbidden import ForbiddenContract  # noqa: E402
from importlinter.contracts.layers import LayersContract  # noqa: E402

CONTRACT_TYPES = {"layers": LayersContract, "forbidden": ForbiddenContract, "acyclic_siblings": AcyclicSiblingsContract}
"""The contract types pyproject.toml uses, by the names its ``type`` fields give."""

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


@pytest.fixture(scope="module")
def options():
    return use_cases.read_user_options(str(PYPROJECT))


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("cotembed", "cotembed_critters", "cotembed_experiments", include_external_packages=True, cache_dir=None)


def kept(options, graph, contract_id: str) -> bool:
    found = [c for c in options.contracts_options if c.get("id") == contract_id]
    assert found, f"no contract {contract_id!r} in {PYPROJECT}"
    contract = CONTRACT_TYPES[found[0]["type"]](
        name=found[0]["name"], session_options=options.session_options, contract_options=found[0])
    return bool(contract.check(copy.deepcopy(graph), verbose=False).kept)


def with_import(graph, importer: str, imported: str):
    changed = copy.deepcopy(graph)
    changed.add_import(importer=importer, imported=imported, line_number=1, line_contents=f"import {imported}")
    return changed


CONTRACTS = ("layers", "pure-scoring", "guests", "critters-no-encoders", "acyclic")


@pytest.mark.parametrize("contract_id", CONTRACTS)
def test_the_contract_holds(options, graph, contract_id):
    assert kept(options, graph, contract_id)


@pytest.mark.parametrize(("contract_id", "importer", "imported"), [
    ("pure-scoring", "cotembed.scoring._functions", "torch"),
    ("pure-scoring", "cotembed.scoring._methods", "cotembed.encoders._base"),
    ("critters-no-encoders", "cotembed_critters.world", "cotembed.encoders._st"),
    ("pure-scoring", "cotembed.scoring._methods", "cotembed_critters.world"),
    ("guests", "cotembed._classifier", "cotembed_critters.world"),
    ("guests", "cotembed.encoders._hf", "cotembed_critters.model"),  # only the critters adapters may
    ("guests", "cotembed.cli._classify", "cotembed_critters.species"),
    ("guests", "cotembed.evaluation._evaluate", "cotembed_experiments.pokemon.harness"),
    ("guests", "cotembed.cli._critters", "cotembed_experiments.pokemon.cards"),  # each adapter reaches only its own guest
    ("acyclic", "cotembed_critters.drawing", "cotembed_critters.species"),
    ("layers", "cotembed.scoring._methods", "cotembed.evaluation._evaluate"),
    ("layers", "cotembed.evaluation._evaluate", "cotembed.reporting._html"),
    ("layers", "cotembed.errors", "cotembed.system"),
    ("acyclic", "cotembed.inspection._suggest", "cotembed.inspection._data"),
    ("acyclic", "cotembed.optimize._proposers", "cotembed.optimize._llm_proposers"),
])
def test_the_contract_catches_the_import_it_forbids(options, graph, contract_id, importer, imported):
    assert kept(options, graph, contract_id)
    assert not kept(options, with_import(graph, importer, imported), contract_id)
