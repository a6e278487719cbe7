"""The project's lab tools, the ``rerank-lab`` distribution (``lab/``), apart from the service:
quality evaluation (``rerank-eval``), the load benchmark (``rerank-bench``), the soak test
(``rerank-soak``), the GPU check (``rerank-gpu-check``), the benchmark model builders
(``rerank-bench-model``), the agreement of the optimized runtimes with torch (``rerank-agreement``),
fine-tuning (``rerank-train``, ``rerank-candidates``), the local multi-node cluster and its demo
(``make cluster-demo``), the autoscaling benchmark and the ingress environments of local Rays.
Nothing the service imports at serve time lives here."""
