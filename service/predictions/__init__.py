"""The prediction log: every scored pass as one row, spooled to local segment files off the request path.

log_setup (the log and its shipper from the settings), rows (what a row holds), journal (a worker's bounded
queue, surviving the worker), spool (the writer thread, segment files), shipper (sealed segments to the sink,
once per spool) and ship_main (the shipper as a process beside gunicorn's workers), sinks (day-partitioned
Parquet, or NATS JetStream), parquet_store (the Parquet layout and retention), query (`regno-log`, DuckDB over
the files), sink_main (`regno-log-sink`, JetStream to Parquet).

The package imports none of them, so a health check (`regno-log-sink --check`, every few seconds) loads only
what it needs.
"""
