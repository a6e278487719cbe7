"""The project's tools (the ``tools`` extra): quality evaluation (``rerank-eval``), the load
benchmark (``rerank-bench``), the soak test (``rerank-soak``), the GPU check (``rerank-gpu-check``),
the model builders (``rerank-bench-model``; the tiny test models), the multi-node cluster demo
(``make cluster-demo``), the autoscaling benchmark and the agreement of the optimized runtimes with
torch (``rerank-agreement``)."""
