"""The service's JSON encoding (orjson): the same JSON the standard library writes, numpy values
taken as they are, and still strict: a number that is not finite is refused, never sent as null."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytest.importorskip("orjson")

from cotembed.serve._responses import JSONResponse, dumps


def test_answers_read_back_as_the_standard_library_writes_them() -> None:
    payload = {"object": "list", "label": "Brazzik – ünïcode", "score": 0.1 + 0.2, "data": [{"index": 0, "p": [1e-300, 0.5]}],
               "nothing": None, "nullable": "null"}
    assert json.loads(dumps(payload)) == json.loads(json.dumps(payload))
    assert json.loads(JSONResponse(payload).body) == payload


def test_numpy_values_are_written_as_numbers() -> None:
    out = json.loads(dumps({"row": np.array([0.25, 0.75], dtype=np.float32), "best": np.int64(1), "p": np.float64(0.5)}))
    assert out == {"row": [0.25, 0.75], "best": 1, "p": 0.5}


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_number_that_is_not_finite_is_refused_naming_where_it_is(bad: float) -> None:
    with pytest.raises(ValueError, match=r"data\[1\]\.score"):
        dumps({"data": [{"score": 0.5}, {"score": bad}]})
    with pytest.raises(ValueError, match="row"):
        dumps({"row": np.array([0.5, bad])})
