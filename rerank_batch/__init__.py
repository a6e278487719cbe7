"""Offline batch reranking on Ray Data: files of queries and candidates in, a scored run out, with
the service's own engine (``rerank-batch``; ``run_batch`` from Python)."""

from rerank_batch.inputs import InputError
from rerank_batch.job import BatchJob, JobError, run_batch

__all__ = ["BatchJob", "InputError", "JobError", "run_batch"]
