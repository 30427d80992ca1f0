"""Job output: UTF-8-safe chunking, the in-memory log and the on-disk spool."""
