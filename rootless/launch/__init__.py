"""The process tree of a container, one module per process (see each module's essay).

    gather.py    `run`/`start`: fill the Launch (image, record, caps, seccomp, id map)
    prefork.py   P0 forks P1 first thing, before anything heavy is imported
    p0.py        the CLI's launch side: hand P1 the Launch, write the id maps, forward
                 signals, relay the exit status or the error line
    p1.py        the FUSE server and monitor: user + mount namespace, union rootfs, stdio
    supervise.py P1's trio half: serve FUSE, relay the pty or pipes, log, learn
    fakeroot.py  P1 answers fakeroot's chown/set*id/get*id/stat under a single-id map
    p2.py        the namespaces of the container; the guard that kills pid 1 from outside
    p3.py        pid 1: mounts (mountplan.py), pivot_root, then become()
    exec.py      `rsbox exec`: join the namespaces from outside, then become(outside=True)
    become.py    the one sealed path from rsbox's code into the container's process
    protocol.py  what crosses the pipes between the processes
    caps.py      capability sets (Docker's default, --cap-add/--cap-drop, --privileged)
    terminal.py  the container's pty, the user's terminal in raw mode
    init.c       rsbox-init, pid 1 of --init (initbin.py finds it)

This package's __init__ imports nothing: prefork.py must fork before anything is loaded.
"""
