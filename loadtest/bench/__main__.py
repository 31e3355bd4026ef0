"""`python -m loadtest.bench` (make bench): the throughput table, then /reg/ beside bulk work (throughput.py)."""

from loadtest.bench.throughput import main

raise SystemExit(main())
