"""The fused cot path of Scorer.scores gives the scores of the method's own ``score`` on Batch."""

from __future__ import annotations

import numpy as np
import pytest

from cotembed.scoring import Scorer, ScoringConfig, get_method
from cotembed.system import System


def _system(groups: int, options: int, classes: int, rng: np.random.Generator, equal: bool) -> System:
    sizes = [options] * groups if equal else [options + g for g in range(groups)]
    spec = {f"g{g}": {"prompt": f"q{g} {{}}", "options": [f"o{g}_{o}" for o in range(sizes[g])]} for g in range(groups)}
    rules = {f"c{n}": {f"g{g}": int(rng.integers(sizes[g])) for g in range(groups)} for n in range(classes)}
    return System.from_dict({"groups": spec, "rules": rules})


@pytest.mark.parametrize("equal", [True, False])
@pytest.mark.parametrize("temperature", [1.0, 100.0, 5000.0])
def test_fused_scores_match_the_unfused_path(equal, temperature):
    rng = np.random.default_rng(3)
    system = _system(4, 6, 9, rng, equal)
    q = system.compile().n_prompts
    prompts = rng.normal(size=(q, 16)).astype(np.float32)
    x = rng.normal(size=(700, 16)).astype(np.float32) * rng.uniform(0.1, 10, size=(700, 1)).astype(np.float32)  # not unit length
    x[5] = 0.0  # a zero row stays finite
    scorer = Scorer(system, {"options": prompts}, ScoringConfig(temperature), ("cot",))
    fused = scorer.scores(x, "cot", chunk=256)
    unfused = np.concatenate([get_method("cot").score(batch) for _, batch in scorer.batches(x, ("cot",), 256)])
    assert np.isfinite(fused).all()
    # Both round the logits differently in the last bit; at temperature T that moves a probability by ~T x 1e-8.
    np.testing.assert_allclose(fused, unfused, atol=2e-5 * max(1.0, temperature / 1000))
    assert (fused.argmax(axis=1) == unfused.argmax(axis=1)).mean() > 0.99
