"""Load benchmark of the reranking service (``rerank-bench``).

``loadgen`` sends real query/passage traffic over HTTP in a sweep of concurrency x documents per
request; ``ceiling`` measures the same model in-process at its best batch size; ``naive_server`` is
the one-``predict``-per-request FastAPI baseline; ``plot`` draws the sweep; ``cli`` ties them
together.
"""
