"""HTTP around the views: reading JSON bodies, the response envelope and its error handlers, API-key auth."""
