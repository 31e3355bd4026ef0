"""regno-replay: a candidate model scored on a window of the prediction log, beside the answers the log holds.

candidate.py finds and loads the candidate (a file, or a version fetched and verified as the syncer does),
passes.py reads the window's passes from the log's Parquet in bounded Arrow batches, scoring.py scores them
in a pool of processes through the service's scoring engine, store.py writes the replay rows and replaces
the version's replay folder whole, verdict.py turns them into the summary the promotion gate reads, and
main.py is the command.
"""
