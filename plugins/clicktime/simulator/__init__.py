"""A real HTTP server that behaves like the ClickTime REST API v2, for demos, tests and benchmarks."""
