"""Benchmarks (N4, training, DAG planning): each prints ratios measured in one run on this
machine."""
