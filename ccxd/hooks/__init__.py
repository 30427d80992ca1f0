"""Pre-execution, post-execution and error hooks."""
