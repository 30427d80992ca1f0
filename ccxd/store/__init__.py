"""Where history lives: the store interface, Redis, the journal and the embedded server."""
