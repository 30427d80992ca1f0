"""ccxctl: the control CLI for the ccxd daemon."""
