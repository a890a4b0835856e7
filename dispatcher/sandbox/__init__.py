"""A local HTTP server speaking the three providers' APIs, for demos, tests and benchmarks."""
