"""A local HTTP server speaking every provider's API, for demos, tests and benchmarks."""
