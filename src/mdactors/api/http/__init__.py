"""HTTP on port 8080: the Quart app, its errors, REST, the UI API and SSE."""
