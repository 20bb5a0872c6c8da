"""Child processes with exactly one owner: spawn, drain, stop, reap; the spawner thread
and the parent-death launcher. A leaf: imports only errors and defaults.
"""
