"""Load and benchmarks: Locust, the throughput and in-process benchmarks, and starting the real servers they need."""
