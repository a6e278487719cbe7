"""Integrations with other frameworks, one module each, imported only when asked for.

``rerank_core`` does not depend on these frameworks: importing this package needs none of them;
``from rerank_core.integrations.langchain import RerankServiceCompressor`` needs ``langchain-core``.
"""
