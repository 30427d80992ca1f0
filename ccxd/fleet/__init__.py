"""A fleet: several ccxd daemons ("nodes") on one Redis acting as one service.

The Redis-level primitives, each a file doing one thing (docs/fleet-design.md
is the contract): ``keys`` (every key name), ``placement`` (which node may run a
job; no I/O), ``entry`` (a queue entry, sealed; no I/O), ``scripts`` (the Lua
state changes), ``queue`` (submit, claim, pass, finish), ``registry`` (nodes,
leases, the reaper), ``control`` (remote verbs), ``output_follow`` (a remote
job's output) and ``claude_block`` (a usage limit that holds every node).
``service`` puts them to work in the daemon.
"""
