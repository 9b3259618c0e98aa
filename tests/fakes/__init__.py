"""Local fakes of the services objlibd talks to (loopback only, for tests and benchmarks)."""
