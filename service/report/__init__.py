"""regno-report: one self-contained HTML page on how the models did over a time window of the prediction log.

data (DuckDB queries over the log and its labels, into plain numbers and arrays), references (each model
version's file and training reference), verdict (the paired test and the plain-words verdicts), plots
(matplotlib figures as PNG bytes), render (the page, from templates/report.html.j2), main (the command).
"""
