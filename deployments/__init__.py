"""The Ray Serve layer: thin deployments around ``rerank_core`` objects, built from configuration."""
