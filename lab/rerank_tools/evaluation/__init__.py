"""Quality evaluation of rerankers (``rerank-eval``).

``loaders`` reads the two dataset layouts (self-contained candidates JSONL + TREC qrels; BEIR
corpus/queries/qrels + a TREC run of candidates), ``rerankers`` reorders each query's candidates
in-process or over HTTP, ``metrics`` scores both the reranked and the input order with ir-measures,
and ``cli`` writes the run file and a JSON summary.
"""
