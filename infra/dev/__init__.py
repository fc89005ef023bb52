"""`make run`: the whole stack on one machine (devstack), and the servers tests and benchmarks reuse."""
