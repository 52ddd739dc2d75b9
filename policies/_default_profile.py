"""The source of rsbox's built-in profiles: `profiles/{default,strict,fakeroot}.json`.

Regenerate after editing (a test fails while a file and its source disagree):

    for p in default strict fakeroot; do
        python -m policies._default_profile $p > policies/profiles/$p.json
    done

`strict` and `fakeroot` are `default` with a few rule groups swapped (see `build`).

Design
------
An allowlist in Docker's JSON format, so the file also works as
`docker run --security-opt seccomp=default.json`:

- `defaultAction` is ERRNO(EPERM): a syscall the profile knows but does not allow fails
  with EPERM. Syscalls *newer* than the profile (numbered above the highest name in it)
  get ENOSYS from the compiler's prologue instead, so libc falls back (see compiler.py).
- ALLOW groups cover what ordinary programs (busybox sh, python, gcc, git, package
  managers) use: files, memory, processes and threads, signals, time, sockets, IPC.
- `clone` is allowed only without CLONE_NEW* flags (arg 0 masked compare); `clone3` gets
  ENOSYS because seccomp cannot look into its flags struct, and glibc then uses `clone`.
- `ioctl` is allowed except TIOCSTI (fake terminal input) and TIOCLINUX. The kernel takes
  the command as 32 bits, so the exception is on the low 32 bits. libseccomp cannot add a
  rule whose action equals the default (EPERM), so the exception is written as the
  complement: ALLOW when the low 32 bits fall in one of the aligned blocks that tile
  [0, 2**32) minus the denied commands (one SCMP_CMP_MASKED_EQ rule per block, hi mask 0).
- A documentary ERRNO(EPERM) group names what we deny on purpose (mount, namespaces,
  keyrings, kexec, modules, bpf, perf, userfaultfd, io_uring, ...). The compiler skips it
  (same action as the default), but it makes those syscalls "known" to the profile, so
  they get EPERM rather than ENOSYS.
- One ABI: the native one (see `NATIVE_ONLY` below).

One ABI per machine
-------------------
An x86_64 kernel also runs i386 syscalls (`int $0x80`, also from a 64-bit program) and,
when built with it, x32 syscalls (the x86_64 entry with bit 0x40000000 in the number).
The built-in profiles list no sub-architecture in their archMap, so the compiler only
filters the native ABI and every syscall of another ABI gets ENOSYS (compiler rule 7),
as on a kernel without that ABI. Docker-format profiles given by the user are compiled
for the ABIs *they* list (Docker's lists i386 and x32), so nothing changes for them.

Why not filter the i386 ABI with the same rules instead: its argument rules cannot hold.
i386 reaches the socket calls through socketcall(call, args) and System V IPC through
ipc(call, ...), and the arguments of socketcall live in user memory behind a pointer that
a BPF filter cannot read: socketcall(SYS_SOCKET, {AF_VSOCK, ...}) carries a family no
rule can see. It is worse than a blind spot: libseccomp rewrites each rule on a socket
call into a rule on socketcall with the same arguments, but socketcall's first argument
is the sub-call, not the family. strict's `family == AF_UNIX` (1) became `sub-call ==
SYS_SOCKET` (1): socket() through socketcall with any family, although strict does not
allow socketcall itself; default allows socketcall outright. That was the hole: vsock
sockets from a 64-bit container under default, vsock and netlink ones under strict.
Refusing socketcall's SYS_SOCKET alone would not do: i386 glibc, unless configured for
kernels from 4.3 on (Debian's is not), makes every socket() through socketcall and does
not fall back to the direct syscall, so 32-bit programs would lose sockets anyway. x32's
argument rules would hold, but x32 is off in most kernels and nothing in a container
needs it; it would be a second syscall table to audit. The compat entry points have also
been a steady source of kernel bugs of their own (compat_alloc_user_space, CVE-2010-3081;
x32 recvmmsg, CVE-2014-0038). The same rule holds on every machine, so that "the
profile" means one syscall table: aarch64 drops arm, s390x drops s390 (which multiplexes
like i386).

The price: 32-bit programs (an i386 image, wine, `gcc -m32` output) do not run under
`default`, `strict` or `fakeroot`; they get ENOSYS from their first syscall. Run them
with a profile that lists the ABI (Docker's, or a copy of one of ours with
`"subArchitectures": ["SCMP_ARCH_X86"]`, which brings the socketcall hole back) or
`unconfined`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

# Kernel constants (include/uapi/linux/sched.h, asm-generic/ioctls.h).
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
# CLONE_NEWTIME (0x80) is left out on purpose: for clone() that bit is part of CSIGNAL (the
# exit signal), and clone() rejects CLONE_NEWTIME anyway; only clone3/unshare accept it.
CLONE_NEW_MASK = (
    CLONE_NEWNS
    | CLONE_NEWCGROUP
    | CLONE_NEWUTS
    | CLONE_NEWIPC
    | CLONE_NEWUSER
    | CLONE_NEWPID
    | CLONE_NEWNET
)
AF_UNIX = 1
AF_INET = 2
AF_INET6 = 10
AF_ALG = 38  # the kernel's crypto API: a large attack surface, no dev tool needs it
AF_VSOCK = 40  # talks to the hypervisor: a container has no business there
DENIED_FAMILIES = (AF_ALG, AF_VSOCK)
FAMILY_END = 64
STRICT_FAMILIES = (AF_UNIX, AF_INET, AF_INET6)
S_IFMT = 0o170000
S_IFCHR = 0o020000
S_IFBLK = 0o060000
TIOCSTI = 0x5412
TIOCLINUX = 0x541C
DENIED_IOCTLS = (TIOCSTI, TIOCLINUX)
ENOSYS = 38
EPERM = 1

PERSONALITY_OK = (
    0x0000,  # PER_LINUX
    0x0008,  # PER_LINUX32
    0x20000,  # UNAME26
    0x20008,  # UNAME26 | PER_LINUX32
    0xFFFFFFFF,  # query only
)


def _words(text: str) -> list[str]:
    return text.split()


GROUPS: dict[str, list[str]] = {
    "files and directories": _words("""
        open openat openat2 creat close close_range read write readv writev pread64 pwrite64
        preadv pwritev preadv2 pwritev2 lseek _llseek stat fstat lstat newfstatat statx
        stat64 fstat64 lstat64 fstatat64 statfs fstatfs statfs64 fstatfs64 access faccessat
        faccessat2 getdents getdents64 readdir getcwd chdir fchdir rename renameat renameat2
        mkdir mkdirat rmdir link linkat unlink unlinkat symlink symlinkat readlink readlinkat
        chmod fchmod fchmodat fchmodat2 chown fchown lchown fchownat chown32 fchown32
        lchown32 umask utime utimes futimesat utimensat utimensat_time64 mknod mknodat
        truncate ftruncate truncate64 ftruncate64 fallocate fadvise64 fadvise64_64 readahead
        fsync fdatasync sync syncfs sync_file_range sync_file_range2 arm_sync_file_range
        arm_fadvise64_64 flock fcntl fcntl64 dup dup2 dup3 pipe pipe2 sendfile sendfile64
        splice tee vmsplice copy_file_range getxattr lgetxattr fgetxattr setxattr lsetxattr
        fsetxattr listxattr llistxattr flistxattr removexattr lremovexattr fremovexattr
        inotify_init inotify_init1 inotify_add_watch inotify_rm_watch memfd_create
        cachestat
    """),
    "polling, events, async I/O (not io_uring)": _words("""
        select _newselect pselect6 pselect6_time64 poll ppoll ppoll_time64 epoll_create
        epoll_create1 epoll_ctl epoll_ctl_old epoll_wait epoll_wait_old epoll_pwait
        epoll_pwait2 eventfd eventfd2 signalfd signalfd4 timerfd_create timerfd_settime
        timerfd_gettime timerfd_settime64 timerfd_gettime64 io_setup io_destroy io_submit
        io_cancel io_getevents io_pgetevents io_pgetevents_time64
    """),
    "memory": _words("""
        brk mmap mmap2 munmap mremap mprotect msync mincore madvise mlock mlock2 munlock
        mlockall munlockall membarrier pkey_alloc pkey_free pkey_mprotect map_shadow_stack
        get_mempolicy
    """),
    "processes and threads": _words("""
        fork vfork execve execveat exit exit_group wait4 waitid waitpid getpid getppid gettid
        getpgid setpgid getpgrp getsid setsid set_tid_address set_robust_list
        get_robust_list futex futex_time64 futex_waitv futex_wake futex_wait futex_requeue
        rseq restart_syscall sched_yield sched_getaffinity sched_setaffinity sched_getparam
        sched_setparam sched_getscheduler sched_setscheduler sched_get_priority_max
        sched_get_priority_min sched_rr_get_interval sched_rr_get_interval_time64
        sched_getattr sched_setattr getpriority setpriority ioprio_get ioprio_set getrlimit
        setrlimit ugetrlimit prlimit64 getrusage times uname getcpu prctl arch_prctl
        set_thread_area get_thread_area set_tls cacheflush riscv_flush_icache pidfd_open
        pidfd_send_signal process_vm_readv process_vm_writev landlock_create_ruleset
        landlock_add_rule landlock_restrict_self seccomp sethostname setdomainname
    """),
    "credentials (inside the user namespace)": _words("""
        getuid geteuid getgid getegid getuid32 geteuid32 getgid32 getegid32 setuid setgid
        setuid32 setgid32 setreuid setregid setreuid32 setregid32 setresuid setresgid
        setresuid32 setresgid32 getresuid getresgid getresuid32 getresgid32 setfsuid setfsgid
        setfsuid32 setfsgid32 getgroups setgroups getgroups32 setgroups32 capget capset
    """),
    "signals": _words("""
        kill tkill tgkill rt_sigaction rt_sigprocmask rt_sigreturn rt_sigpending
        rt_sigtimedwait rt_sigtimedwait_time64 rt_sigqueueinfo rt_tgsigqueueinfo rt_sigsuspend
        sigaltstack sigreturn sigaction signal sigprocmask sigpending sigsuspend pause alarm
    """),
    "time": _words("""
        time gettimeofday clock_gettime clock_gettime64 clock_getres clock_getres_time64
        clock_nanosleep clock_nanosleep_time64 nanosleep getitimer setitimer timer_create
        timer_settime timer_settime64 timer_gettime timer_gettime64 timer_getoverrun
        timer_delete adjtimex clock_adjtime clock_adjtime64
    """),
    "sockets (socket itself: by family, below)": _words("""
        socketpair socketcall bind connect listen accept accept4 getsockname
        getpeername send recv sendto recvfrom sendmsg recvmsg sendmmsg recvmmsg
        recvmmsg_time64 shutdown setsockopt getsockopt
    """),
    "System V and POSIX IPC": _words("""
        ipc shmget shmat shmdt shmctl semget semop semtimedop semtimedop_time64 semctl msgget
        msgsnd msgrcv msgctl mq_open mq_unlink mq_timedsend mq_timedsend_time64
        mq_timedreceive mq_timedreceive_time64 mq_notify mq_getsetattr
    """),
    "misc": _words("""
        getrandom sysinfo
    """),
}

DENIED: dict[str, list[str]] = {
    "mounts and the new mount API": _words("""
        mount umount umount2 pivot_root fsopen fsconfig fsmount fspick move_mount open_tree
        mount_setattr quotactl quotactl_fd swapon swapoff
    """),
    "namespaces (clone is handled by its own rule)": ["unshare", "setns"],
    "kernel keyrings": ["keyctl", "add_key", "request_key"],
    "kernel replacement and modules": _words("""
        kexec_load kexec_file_load init_module finit_module delete_module create_module
        query_module get_kernel_syms reboot
    """),
    "file handles (CVE-2014-3519 class)": ["open_by_handle_at", "name_to_handle_at"],
    "kernel attack surface": _words("""
        bpf perf_event_open userfaultfd io_uring_setup io_uring_enter io_uring_register
        lookup_dcookie fanotify_init kcmp process_madvise uselib _sysctl ustat sysfs
        nfsservctl vm86 vm86old modify_ldt iopl ioperm
    """),
    "host-wide state": _words("""
        settimeofday stime clock_settime clock_settime64 syslog acct vhangup set_mempolicy
        mbind migrate_pages move_pages set_mempolicy_home_node
    """),
}


def ioctl_allow_blocks(denied: tuple[int, ...], end: int = 2**32) -> list[tuple[int, int]]:
    """(mask, value) pairs whose MASKED_EQ matches tile [0, end) minus `denied`.

    Each block is aligned: [value, value + 2**k) with mask = ~(2**k - 1) & 0xffffffff.
    The masks have no high 32 bits, so the high half of the argument is ignored, which is
    what the kernel does with ioctl's `unsigned int cmd`.
    """
    out: list[tuple[int, int]] = []
    lo = 0
    for hole in [*sorted(denied), end]:
        hi = hole  # exclusive
        while lo < hi:
            k = 0
            while k < 32 and lo % (1 << (k + 1)) == 0 and lo + (1 << (k + 1)) <= hi:
                k += 1
            out.append((~((1 << k) - 1) & 0xFFFFFFFF, lo))
            lo += 1 << k
        lo = hole + 1
    return out


def _masked_rules(
    name: str, index: int, blocks: list[tuple[int, int]], comment: str, action: str
) -> list[dict[str, Any]]:
    return [
        {
            "names": [name],
            "action": action,
            "args": [
                {"index": index, "value": mask, "valueTwo": value, "op": "SCMP_CMP_MASKED_EQ"}
            ],
            "comment": comment,
        }
        for mask, value in blocks
    ]


# What `fakeroot` turns into "success, no effect" (Charliecloud's --seccomp): package
# managers chown files to users and switch ids, which a single-id user namespace refuses.
FAKEROOT_NOOPS = _words("""
    chown fchown lchown fchownat chown32 fchown32 lchown32
    setuid setgid setuid32 setgid32 setreuid setregid setreuid32 setregid32 setresuid
    setresgid setresuid32 setresgid32 setfsuid setfsgid setfsuid32 setfsgid32
    setgroups setgroups32 capset
""")
# The architectures the built-in profiles name, each without its companion ABIs (i386 and
# x32 on x86_64, arm on aarch64, s390 on s390x): those get ENOSYS (see the docstring).
NATIVE_ONLY = (
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_RISCV64",
)
# `strict`: for untrusted dev tools. Debugging another process is what it takes away.
STRICT_REMOVED = _words("ptrace process_vm_readv process_vm_writev socketcall")


def build(name: str = "default") -> dict[str, Any]:
    """The Docker-format profile for built-in `name` (default, strict or fakeroot)."""
    if name not in ("default", "strict", "fakeroot"):
        raise ValueError(f"no built-in profile {name!r}")
    removed = set()
    if name == "fakeroot":
        removed |= set(FAKEROOT_NOOPS) | {"mknod", "mknodat"}
    if name == "strict":
        removed |= set(STRICT_REMOVED)
    syscalls: list[dict[str, Any]] = []
    for comment, names in GROUPS.items():
        kept = [n for n in names if n not in removed]
        syscalls.append({"names": kept, "action": "SCMP_ACT_ALLOW", "comment": comment})
    syscalls.append(
        {
            "names": ["chroot"],
            "action": "SCMP_ACT_ALLOW",
            "includes": {"caps": ["CAP_SYS_CHROOT"]},
            "comment": "chroot only with CAP_SYS_CHROOT (in Docker's default set)",
        }
    )
    if name != "strict":
        syscalls.append(
            {
                "names": ["ptrace"],
                "action": "SCMP_ACT_ALLOW",
                "includes": {"minKernel": "4.8"},
                "comment": "before 4.8 a tracer could rewrite a syscall after seccomp ran",
            }
        )
    if name == "strict":
        syscalls.append(
            {
                "names": ["personality"],
                "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 0, "value": 0xFFFFFFFF, "op": "SCMP_CMP_EQ"}],
                "comment": "personality: query only, no change of persona",
            }
        )
    else:
        for value in PERSONALITY_OK:
            syscalls.append(
                {
                    "names": ["personality"],
                    "action": "SCMP_ACT_ALLOW",
                    "args": [{"index": 0, "value": value, "op": "SCMP_CMP_EQ"}],
                    "comment": "personality: only harmless personas (no ADDR_NO_RANDOMIZE)",
                }
            )
    syscalls.append(
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [
                {"index": 0, "value": CLONE_NEW_MASK, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
            ],
            "excludes": {"arches": ["s390", "s390x"]},
            "comment": "clone without any CLONE_NEW* flag (s390 passes flags in arg 1)",
        }
    )
    syscalls.append(
        {
            "names": ["clone3"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": ENOSYS,
            "comment": "flags live in a struct seccomp cannot read: ENOSYS makes libc use clone",
        }
    )
    syscalls += _masked_rules(
        "ioctl",
        1,
        ioctl_allow_blocks(DENIED_IOCTLS),
        "ioctl except TIOCSTI/TIOCLINUX, on the low 32 bits of cmd",
        "SCMP_ACT_ALLOW",
    )
    # socket's family is an int: judged on the low 32 bits, as the kernel does (Docker's
    # `value > 40` lets 0x1_0000_0028, which the kernel reads as AF_VSOCK, through).
    if name == "strict":
        families = [(0xFFFFFFFF, f) for f in STRICT_FAMILIES]
        why = "socket: AF_UNIX, AF_INET, AF_INET6 only (low 32 bits of the family)"
    else:
        # Families stop at AF_MAX (46 in 6.x): tiling [0, 64) rather than [0, 2**32) keeps
        # this to 8 rules; a family >= 64 gets EPERM instead of the kernel's EAFNOSUPPORT.
        families = ioctl_allow_blocks(DENIED_FAMILIES, end=FAMILY_END)
        why = "socket: every family but AF_ALG and AF_VSOCK (low 32 bits of the family)"
    syscalls += _masked_rules("socket", 0, families, why, "SCMP_ACT_ALLOW")
    if name == "fakeroot":
        syscalls.append(
            {
                "names": FAKEROOT_NOOPS,
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": 0,
                "comment": "fakeroot: ownership and id changes succeed without effect",
            }
        )
        for sysname, index in (("mknod", 1), ("mknodat", 2)):
            for kind in (S_IFCHR, S_IFBLK):
                syscalls.append(
                    {
                        "names": [sysname],
                        "action": "SCMP_ACT_ERRNO",
                        "errnoRet": 0,
                        "args": [
                            {
                                "index": index,
                                "value": S_IFMT,
                                "valueTwo": kind,
                                "op": "SCMP_CMP_MASKED_EQ",
                            }
                        ],
                        "comment": "fakeroot: device nodes are not made, and that is a success",
                    }
                )
            for kind in (0, 0o010000, 0o100000, 0o140000):  # plain, FIFO, regular, socket
                syscalls.append(
                    {
                        "names": [sysname],
                        "action": "SCMP_ACT_ALLOW",
                        "args": [
                            {
                                "index": index,
                                "value": S_IFMT,
                                "valueTwo": kind,
                                "op": "SCMP_CMP_MASKED_EQ",
                            }
                        ],
                        "comment": "fakeroot: FIFOs, sockets and regular files are made for real",
                    }
                )
    denied = dict(DENIED)
    if name == "strict":
        denied["debugging other processes"] = STRICT_REMOVED
    for comment, names in denied.items():
        syscalls.append(
            {
                "names": names,
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": EPERM,
                "comment": f"denied: {comment} (documentary: same as the default action)",
            }
        )
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        # The native ABI only: no subArchitectures (see "One ABI per machine" above).
        "archMap": [{"architecture": a, "subArchitectures": []} for a in NATIVE_ONLY],
        "syscalls": syscalls,
    }


def render(name: str = "default") -> str:
    return json.dumps(build(name), indent=1) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render(sys.argv[1] if len(sys.argv) > 1 else "default"))
