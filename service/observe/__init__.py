"""What operations see: Prometheus metrics and their files, the access line, Sentry, throttled warnings."""
