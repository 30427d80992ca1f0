"""The job model: a job, its state machine, its priority, its file, and the seams others watch it by.

Below the supervisor and everything that watches jobs (``claude/``,
``hooks/``, ``history/``), so those import these types without importing the
supervisor (decision 20-supervisor-split).
"""
