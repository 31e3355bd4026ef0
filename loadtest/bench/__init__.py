"""The benchmarks: each module measures one thing against a baseline taken in the same run, and prints a table.

`python -m loadtest.bench` (make bench) runs throughput.py: the service against a bare Flask floor, then /reg/
beside maximum-size batches (bulk.py). The others run on their own: record.py (one record in process), cache.py,
overhead.py (metrics and Sentry), log.py (the prediction log), score_file.py, source.py (model sources) and
stalled.py (hostile clients at the front door).
"""
