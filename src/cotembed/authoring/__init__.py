"""Writing systems: drafting one with an LLM (:mod:`.build` over the chat client in :mod:`._llm`),
and inducing rules and calibration from a few labelled examples (:mod:`.induce`, ``RuleInducer``).

Submodules are imported on use, so ``import cotembed`` never needs an HTTP client.
"""
