"""Benchmarks of SPEC §9: each prints ratios measured in one run on this machine."""
