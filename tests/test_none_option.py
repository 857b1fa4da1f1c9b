"""A group's "none of these" option: declared in the system file, used by no class, counted against every class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from tests.support import run_cli

from cotembed.errors import SystemValidationError
from cotembed.scoring import _calibration as cal
from cotembed.system import System

ROOT = Path(__file__).resolve().parents[1]
CRITTERS = ROOT / "examples" / "critters" / "system.yaml"


def with_none(data: dict[str, Any], group: str, text: str) -> dict[str, Any]:
    spec = data["groups"][group]
    spec["options"] = [*spec["options"], text]
    spec["none_option"] = text
    return data


def small() -> dict[str, Any]:
    return {"name": "toy", "groups": {"colour": {"prompt": "a {} thing", "options": ["red", "blue"]},
                                      "shape": {"prompt": "a {} shape", "options": ["round", "square"]}},
            "rules": {"A": {"colour": "red", "shape": "round"}, "B": {"colour": "blue", "shape": "square"}}}


def test_none_option_loads_round_trips_and_changes_the_fingerprint(tmp_path: Path) -> None:
    plain = System.from_dict(small())
    marked_data = with_none(small(), "colour", "some other colour")
    listed = System.from_dict({**marked_data, "groups": {**marked_data["groups"], "colour": {
        k: v for k, v in marked_data["groups"]["colour"].items() if k != "none_option"}}})
    marked = System.from_dict(marked_data)
    assert marked.groups[0].none_option == "some other colour" and marked.groups[0].none_index == 2
    assert marked.to_dict()["groups"]["colour"]["none_option"] == "some other colour"
    path = tmp_path / "marked.yaml"
    path.write_text(yaml.safe_dump(marked.to_dict()), encoding="utf-8")
    assert System.load(path) == marked and System.load(path).fingerprint == marked.fingerprint
    assert len({plain.fingerprint, listed.fingerprint, marked.fingerprint}) == 3
    assert "none_option" not in listed.to_dict()["groups"]["colour"]


def test_a_class_using_the_none_option_is_an_error_naming_the_file_and_field(capsys: Any, tmp_path: Path) -> None:
    data = with_none(small(), "colour", "some other colour")
    data["rules"]["B"]["colour"] = ["blue", "some other colour"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    code, out, err = run_cli(capsys, "validate", path)
    assert code == 2
    assert str(path) in err and "rules.B.colour" in err and "none_option" in err
    data = with_none(small(), "shape", "oval")
    data["groups"]["shape"]["none_option"] = "hexagonal"
    with pytest.raises(SystemValidationError, match=r"groups\.shape\.none_option: must be one of the group's options"):
        System.from_dict(data)


def test_edits_keep_the_none_option_and_refuse_rules_that_use_it() -> None:
    system = System.from_dict(with_none(small(), "colour", "some other colour"))
    with pytest.raises(SystemValidationError, match="none_option"):
        system.with_rule("A", "colour", "some other colour")
    renamed = system.replace_option("colour", "some other colour", "another colour")
    assert renamed.groups[0].none_option == "another colour"
    assert renamed.with_group_weights({"colour": 2.0}).groups[0].none_option == "another colour"
    assert system.remove_option("colour", "some other colour").groups[0].none_option is None


def test_the_none_options_mass_counts_against_every_class() -> None:
    """Same answers, one option more: every class's rule support drops by the mass the none option draws,
    and an input answering "none of these" fits no class."""
    system = System.from_dict(with_none(small(), "colour", "some other colour"))
    rules = cal.GroupRules.from_compiled(system.compile())
    rng = np.random.default_rng(0)
    sims = rng.normal(0, 0.05, size=(64, len(system.compile().prompts))).astype(np.float32)
    sims[:32, 2] += 0.2  # the first half answers colour: "some other colour"
    masses = np.exp(cal.group_log_masses(sims, rules, 50.0))
    assert np.all(masses[:, 0, :] < 1)
    # colour's masses over the classes sum to 1 minus what "some other colour" drew
    from cotembed.scoring._functions import group_log_softmax

    log_p = group_log_softmax(sims, rules.offsets, 50.0)
    assert np.allclose(masses[:, 0, :].sum(axis=1), 1 - np.exp(log_p[:, 2]), atol=1e-5)
    from cotembed.scoring._openset import auroc, log_rule_support

    fit = log_rule_support(sims, rules, 50.0)[0]
    assert auroc(fit[32:], fit[:32]) > 0.95  # the "none of these" answers are told from the rest
