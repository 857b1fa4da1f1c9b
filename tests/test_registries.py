"""Registries hold import strings: importing a package registers nothing and imports no plug-in module."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cotembed import encoders
from cotembed.optimize import _proposers as proposers


def _imported_after(statement: str, module: str) -> bool:
    code = f"import sys; {statement}; print({module!r} in sys.modules)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "True"


def test_proposer_registry_imports_the_llm_proposers_only_when_used():
    assert all(isinstance(t, str) and ":" in t for t in proposers.PROPOSERS.values())
    assert not _imported_after("import cotembed.optimize._proposers", "cotembed.optimize._llm_proposers")
    assert proposers.proposer_class("llm-system").needs_llm
    assert proposers.proposer_names(llm=True) == ("llm-wordings", "llm-system")


def test_scoped_proposer_registration_is_undone():
    class Nothing(proposers.Proposer):
        name = "nothing"
        description = "proposes nothing"

        def propose(self, ctx):
            return []

    with proposers.registered_proposer("nothing", Nothing):
        assert proposers.proposer_class("nothing") is Nothing and "nothing" in proposers.proposer_names(llm=False)
    assert "nothing" not in proposers.PROPOSERS


def test_scoped_backend_registration_is_undone_and_refuses_duplicates():
    backend = encoders.Backend("scoped", "support", "ColourEncoder", "dev", "image, text", "test double", "scoped:x")
    with encoders.registered_backend(backend):
        assert encoders.parse_spec("scoped:colour")[0] is backend
        with pytest.raises(ValueError, match="already registered"):
            encoders.register_backend(backend)
    assert "scoped" not in encoders.BACKENDS
    with pytest.raises(encoders.UnknownModelError if hasattr(encoders, "UnknownModelError") else Exception):
        encoders.parse_spec("scoped:colour")
