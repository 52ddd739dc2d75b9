"""Test helper: `python learn_child.py SOCKFD PROGRAM [ARGS...]`.

Installs the learning filter with a listener, sends the listener fd over the inherited
socket SOCKFD (SCM_RIGHTS), then execs PROGRAM: the child's side of learn mode, as the
launcher's P3 would do it (see policies/learn.py).
"""

from __future__ import annotations

import os
import socket
import sys

from policies.learn import install_and_send, learn_filter


def main(argv: list[str]) -> None:
    fd = int(argv[1])
    program = learn_filter()  # compiled before the filter exists: pyseccomp forks ldconfig
    sock = socket.socket(fileno=fd)
    install_and_send(sock, program)
    sock.close()
    os.execv(argv[2], argv[2:])


if __name__ == "__main__":
    main(sys.argv)
