"""Runs as library calls: a frozen, typed request in, a result that carries its provenance out.

Each verb of the command line is one request class and one function here; the CLI only parses
its flags into the request, calls the function and prints the result's :meth:`to_dict` (or a
table of it). The same calls serve programs that want the CLI's results without a subprocess::

    from cotembed.runs import ClassifyRequest, ModelOptions, classify

    result = classify(ClassifyRequest("examples/critters/system.yaml", (".cotembed-data/critters-easy",),
                                      model=ModelOptions("critters", quiet=True)))
    print(result.provenance.system.hash, result.predictions[0].prediction)
"""

from cotembed.runs._calibrate import CalibrateRequest, CalibrateResult, calibrate
from cotembed.runs._classify import ClassifyRequest, ClassifyResult, classify
from cotembed.runs._embed import EmbedRequest, EmbedResult, embed
from cotembed.runs._evaluate import EvalRequest, EvalResult, MultiLabelResult, PageOptions, evaluate_multilabel, evaluate_run
from cotembed.runs._explain import ExplainRequest, ExplainResult, explain
from cotembed.runs._options import CacheOptions, DecisionOptions, ExamplesOptions, MethodSettings, ModelOptions
from cotembed.runs._provenance import Provenance, SystemRef
from cotembed.runs._resources import RunResources

__all__ = [
    "CacheOptions", "CalibrateRequest", "CalibrateResult", "ClassifyRequest", "ClassifyResult", "DecisionOptions",
    "EmbedRequest", "EmbedResult", "EvalRequest", "EvalResult", "ExamplesOptions", "ExplainRequest", "ExplainResult",
    "MethodSettings", "ModelOptions", "MultiLabelResult", "PageOptions", "Provenance", "RunResources", "SystemRef",
    "calibrate", "classify", "embed", "evaluate_multilabel", "evaluate_run", "explain",
]
