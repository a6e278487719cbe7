"""Tools around the service: benchmarks and checks that run against a served or in-process model."""
