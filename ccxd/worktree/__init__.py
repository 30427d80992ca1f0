"""A git worktree per job: ``core`` decides (no I/O), ``manager`` runs git."""
