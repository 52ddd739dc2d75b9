"""The process tree of a container, one module per process (see each module's essay).

    p0.py        the CLI's launch side: fork P1 early (prefork.py), hand it the Launch,
                 write the id maps, relay terminal, signals and the exit status
    p1.py        the FUSE server and monitor: user + mount namespace, union rootfs
    p2.py        the namespaces of the container; the guard that kills pid 1 from outside
    p3.py        pid 1: mounts, pivot_root, then become.become()
    exec.py      `rsbox exec`: join the namespaces from outside, then become.become()
    become.py    the one sealed path from rsbox's code into the container's process
    protocol.py  what crosses the pipes between the processes
    caps.py      capability sets (Docker's default, --cap-add/--cap-drop, --privileged)

This package's __init__ imports nothing: prefork.py must fork before anything is loaded.
"""
