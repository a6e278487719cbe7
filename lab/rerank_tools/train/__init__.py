"""``rerank-train``: a cross-encoder trained on a user's own relevance judgments."""
