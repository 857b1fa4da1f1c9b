"""Classification of large collections: engine-agnostic batch callables and the Ray Data adapter.

:mod:`cotembed.distributed.batch` holds plain callables on column batches
(``dict[str, numpy.ndarray]``) that any engine can map over a dataset: one embeds
inputs (the model loaded once per worker), one scores embeddings for a system (no
model). :mod:`cotembed.distributed.ray` builds a Ray Data pipeline from them; Ray is
the optional extra ``ray`` and is imported only there.
"""
