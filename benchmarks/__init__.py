"""Benchmarks run by `make bench` on the local control plane; figures go to bench-results/."""
