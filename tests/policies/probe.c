/*
 * rsbox seccomp probe: one static binary, many named probes.
 *
 *   probe NAME...     for each NAME, attempt exactly one syscall and print "NAME ERRNO"
 *                     (0 = the call succeeded); exit 0, or 2 on an unknown name
 *   probe --list      print every probe name (the plain probes, then the commands)
 *
 * Commands (the second table, for tests/e2e/test_seal.py) take arguments: each consumes a
 * fixed number of the following argv entries ("probe tty_raw tiocsti XYZ tty_readback XYZ"),
 * may print extra "NAME VALUE" lines of its own, and ends with "NAME RESULT" like a probe.
 * A plain name keeps its old meaning, so every earlier command line still works.
 *
 * Every probe uses syscall(2) or a thin libc wrapper that maps 1:1 onto one syscall, with
 * arguments chosen so that, if the call is allowed, it either succeeds harmlessly or fails
 * with an errno other than EPERM (ENOENT, EINVAL, EFAULT, EBADF, ENOKEY, ...). Calls that
 * create something (a child, an fd, a key in the process keyring) clean it up or vanish
 * with the process. Nothing is ever mounted, unmounted or loaded, even when run as root
 * without a filter: mount/umount2/pivot_root name a path that does not exist, kexec_load
 * has invalid flags. Probes that change the process (unshare_*, setns) should each run in
 * their own process. Reused by the end-to-end tests inside containers.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/ioctl.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <stddef.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <net/if.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_io_uring_setup
#define SYS_io_uring_setup 425
#endif
#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#ifndef AF_ALG
#define AF_ALG 38
#endif
#ifndef SIOCBRADDBR
#define SIOCBRADDBR 0x89a0
#define SIOCBRDELBR 0x89a1
#endif
#ifndef TIOCLINUX
#define TIOCLINUX 0x541C
#endif

/* A probe returns 0 on success or the errno of the failed attempt. */
typedef int (*probe_fn)(void);

static int result(long rc) { return rc < 0 ? errno : 0; }

/* For calls that may create a child: reap it, report the parent's view. */
static int child_result(long rc) {
    if (rc == 0)
        _exit(0); /* in the child */
    if (rc < 0)
        return errno;
    waitpid((pid_t)rc, NULL, __WALL);
    return 0;
}

static int fd_result(long rc) {
    if (rc < 0)
        return errno;
    close((int)rc);
    return 0;
}

static int devnull(void) {
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        perror("probe: open /dev/null");
        exit(3);
    }
    return fd;
}

#define ABSENT "/nonexistent-rsbox-probe"
/* Allowed: ENOENT (the target is looked up before anything is mounted). */
static int p_mount(void) { return result(mount("none", ABSENT, "tmpfs", 0, "size=1m")); }
static int p_umount2(void) { return result(umount2(ABSENT, 0)); }
static int p_pivot_root(void) { return result(syscall(SYS_pivot_root, ABSENT, ABSENT)); }
/* unshare in a forked child, so that the probe process itself never changes namespace;
 * the child exits with the errno (0 = it worked). */
static int unshare_in_child(int flags) {
    pid_t pid = fork();
    if (pid < 0)
        return errno;
    if (pid == 0)
        _exit(unshare(flags) < 0 ? errno : 0);
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 255;
}
static int p_unshare_user(void) { return unshare_in_child(CLONE_NEWUSER); }
static int p_unshare_ns(void) { return unshare_in_child(CLONE_NEWNS); }
static int p_unshare_pid(void) { return unshare_in_child(CLONE_NEWPID); }
static int p_unshare_net(void) { return unshare_in_child(CLONE_NEWNET); }
static int p_unshare_ipc(void) { return unshare_in_child(CLONE_NEWIPC); }
static int p_unshare_uts(void) { return unshare_in_child(CLONE_NEWUTS); }
static int p_unshare_cgroup(void) { return unshare_in_child(CLONE_NEWCGROUP); }
static int p_unshare_time(void) { return unshare_in_child(CLONE_NEWTIME); }
static int clone_flags(unsigned long flags) {
    return child_result(syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0));
}
static int p_clone_newuser(void) { return clone_flags(CLONE_NEWUSER); }
static int p_clone_newns(void) { return clone_flags(CLONE_NEWNS); }
static int p_clone_newpid(void) { return clone_flags(CLONE_NEWPID); }
static int p_clone_newnet(void) { return clone_flags(CLONE_NEWNET); }
static int p_clone_newipc(void) { return clone_flags(CLONE_NEWIPC); }
static int p_clone_newuts(void) { return clone_flags(CLONE_NEWUTS); }
static int p_clone_newcgroup(void) { return clone_flags(CLONE_NEWCGROUP); }
static int p_clone3(void) {
    uint64_t args[11]; /* struct clone_args, CLONE_ARGS_SIZE_VER2 = 88 bytes */
    memset(args, 0, sizeof args);
    args[4] = SIGCHLD; /* exit_signal */
    return child_result(syscall(SYS_clone3, args, 64));
}
static int p_setns(void) {
    int fd = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC); /* -1 still probes setns */
    int e = result(setns(fd, CLONE_NEWNS));
    if (fd >= 0)
        close(fd);
    return e;
}
/* KEYCTL_GET_KEYRING_ID (0) of KEY_SPEC_SESSION_KEYRING (-3), no create. */
static int p_keyctl(void) { return result(syscall(SYS_keyctl, 0, -3, 0, 0, 0)); }
/* A key in the process keyring (-2): gone when the probe exits. */
static int p_add_key(void) {
    return result(syscall(SYS_add_key, "user", "rsbox-probe", "x", 1, -2));
}
static int p_request_key(void) {
    return result(syscall(SYS_request_key, "user", "rsbox-probe-absent", NULL, 0));
}
/* nr_segments 0 with flags 0 would *unload* a loaded kernel: use invalid flags instead. */
static int p_kexec_load(void) {
    return result(syscall(SYS_kexec_load, 0, 1000, NULL, 0x8000UL));
}
static int p_kexec_file_load(void) {
    return result(syscall(SYS_kexec_file_load, -1, -1, 0, "", 0));
}
static int p_open_by_handle_at(void) {
    struct {
        unsigned int handle_bytes;
        int handle_type;
        unsigned char f_handle[8];
    } h = {8, 1, {0}};
    return fd_result(syscall(SYS_open_by_handle_at, AT_FDCWD, &h, O_RDONLY));
}
static int p_bpf(void) {
    char attr[128]; /* BPF_MAP_CREATE with a zero attr: EINVAL if allowed */
    memset(attr, 0, sizeof attr);
    return fd_result(syscall(SYS_bpf, 0, attr, sizeof attr));
}
static int p_perf_event_open(void) {
    char attr[128]; /* size 0 => PERF_ATTR_SIZE_VER0, type HARDWARE, config CYCLES */
    memset(attr, 0, sizeof attr);
    return fd_result(syscall(SYS_perf_event_open, attr, 0, -1, -1, 0));
}
/* UFFD_USER_MODE_ONLY (1): what the kernel lets an unprivileged user have. */
static int p_userfaultfd(void) { return fd_result(syscall(SYS_userfaultfd, O_CLOEXEC | 1)); }
static int p_io_uring_setup(void) {
    char params[120];
    memset(params, 0, sizeof params);
    return fd_result(syscall(SYS_io_uring_setup, 1, params));
}
static int p_init_module(void) { return result(syscall(SYS_init_module, NULL, 0, "")); }
static int p_finit_module(void) { return result(syscall(SYS_finit_module, -1, "", 0)); }
static int p_delete_module(void) {
    return result(syscall(SYS_delete_module, "rsbox_probe_absent", O_NONBLOCK));
}
/* On /dev/null an allowed TIOCSTI/TIOCLINUX fails with ENOTTY, never EPERM. */
static int p_ioctl_tiocsti(void) {
    int fd = devnull();
    char c = 'x';
    int e = result(ioctl(fd, TIOCSTI, &c));
    close(fd);
    return e;
}
static int p_ioctl_tiocsti_high(void) {
    int fd = devnull();
    char c = 'x';
    /* The kernel truncates cmd to 32 bits: this is TIOCSTI to it. */
    int e = result(syscall(SYS_ioctl, fd, 0x100000000UL | TIOCSTI, &c));
    close(fd);
    return e;
}
static int p_ioctl_tioclinux(void) {
    int fd = devnull();
    char sub = 6; /* TIOCL_GETSHIFTSTATE */
    int e = result(ioctl(fd, TIOCLINUX, &sub));
    close(fd);
    return e;
}
/* An ordinary ioctl that must stay allowed: FIONREAD-ish TCGETS on /dev/null -> ENOTTY. */
static int p_ioctl_tcgets(void) {
    int fd = devnull();
    struct termios t;
    int e = result(ioctl(fd, TCGETS, &t));
    close(fd);
    return e == ENOTTY ? 0 : e;
}
static int p_getpid(void) { return result(syscall(SYS_getpid)); }
static int p_open_devnull(void) {
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    char buf[8];
    int e = result(read(fd, buf, sizeof buf));
    close(fd);
    return e;
}
static int p_fork(void) { return child_result(fork()); }
/* A syscall newer than libseccomp 2.5.4 (Linux 6.10): ENOSYS under a profile that does not
 * name it; allowed, flags=1 is invalid so nothing is sealed (EINVAL). */
static int p_mseal(void) { return result(syscall(462, 0UL, 0UL, 1UL)); }
/* Sockets by family: an allowed family gives an fd (closed) or the kernel's own errno
 * (EAFNOSUPPORT when the module is absent, EPERM for AF_PACKET outside our netns). */
static int sock(long family, int type) { return fd_result(syscall(SYS_socket, family, type, 0)); }
static int p_socket_unix(void) { return sock(AF_UNIX, SOCK_STREAM); }
static int p_socket_inet(void) { return sock(AF_INET, SOCK_DGRAM); }
static int p_socket_inet6(void) { return sock(AF_INET6, SOCK_DGRAM); }
static int p_socket_netlink(void) { return sock(AF_NETLINK, SOCK_RAW); }
static int p_socket_packet(void) { return sock(AF_PACKET, SOCK_DGRAM); }
static int p_socket_alg(void) { return sock(AF_ALG, SOCK_SEQPACKET); }
static int p_socket_vsock(void) { return sock(AF_VSOCK, SOCK_STREAM); }
/* The kernel takes `int family`: 0x1_0000_0028 is AF_VSOCK to it, while a 64-bit
 * comparison in the filter sees a number greater than 40. */
static int p_socket_vsock_high(void) { return sock(0x100000000L | AF_VSOCK, SOCK_STREAM); }
/* personality(2): the query leaves everything as it is; the others set the persona. */
static int pers(unsigned long p) {
    long old = syscall(SYS_personality, 0xffffffffUL);
    int e = result(syscall(SYS_personality, p));
    if (old >= 0)
        syscall(SYS_personality, (unsigned long)old);
    return e;
}
static int p_personality_query(void) { return pers(0xffffffffUL); }
static int p_personality_linux(void) { return pers(PER_LINUX); }
static int p_personality_linux32(void) { return pers(PER_LINUX32); }
static int p_personality_no_aslr(void) { return pers(PER_LINUX | ADDR_NO_RANDOMIZE); }
/* A bad request: ESRCH/EIO when allowed. */
static int p_ptrace(void) { return result(syscall(SYS_ptrace, 0x7fff, 0, 0, 0)); }
static int p_process_vm_readv(void) { return result(syscall(SYS_process_vm_readv, 0, 0, 0, 0, 0, 0)); }
static int p_kcmp(void) { return result(syscall(SYS_kcmp, getpid(), getpid(), 0, 0, 0)); }
static int p_pidfd_getfd(void) { return fd_result(syscall(SYS_pidfd_getfd, -1, 0, 0)); }
static int p_process_madvise(void) { return result(syscall(SYS_process_madvise, -1, 0, 0, 0, 0)); }
static int p_chroot(void) { return result(chroot(ABSENT)); }
static int p_sethostname(void) { return result(syscall(SYS_sethostname, "x", 100)); } /* EINVAL */
static int p_syslog(void) { return result(syscall(SYS_syslog, 10, NULL, 0)); } /* buffer size */
static int p_acct(void) { return result(syscall(SYS_acct, ABSENT)); }
static int p_clock_settime(void) { return result(syscall(SYS_clock_settime, -1, NULL)); }
static int p_settimeofday(void) { return result(syscall(SYS_settimeofday, NULL, NULL)); }
static int p_reboot(void) { return result(syscall(SYS_reboot, 0, 0, 0, NULL)); } /* bad magic */
static int p_swapon(void) { return result(syscall(SYS_swapon, ABSENT, 0)); }
static int p_quotactl(void) { return result(syscall(SYS_quotactl, 0, ABSENT, 0, NULL)); }
static int p_name_to_handle_at(void) {
    struct {
        unsigned int handle_bytes;
        int handle_type;
        unsigned char f_handle[128];
    } h = {128, 0, {0}};
    int mount_id;
    return result(syscall(SYS_name_to_handle_at, AT_FDCWD, "/", &h, &mount_id, 0));
}
static int p_fanotify_init(void) { return fd_result(syscall(SYS_fanotify_init, 0, O_RDONLY)); }
static int p_set_mempolicy(void) { return result(syscall(SYS_set_mempolicy, 0, NULL, 0)); }
static int p_mbind(void) { return result(syscall(SYS_mbind, NULL, 0, 0, NULL, 0, 0)); }
static int p_modify_ldt(void) { return result(syscall(SYS_modify_ldt, 0, NULL, 0)); }
static int p_iopl(void) { return result(syscall(SYS_iopl, 0)); }
static int p_uname(void) {
    char buf[512];
    return result(syscall(SYS_uname, buf));
}
static int p_getcwd(void) {
    char buf[256];
    return result(syscall(SYS_getcwd, buf, sizeof buf));
}
static int p_stat_root(void) {
    struct stat st;
    return result(stat("/", &st));
}
static int p_setuid_self(void) { return result(syscall(SYS_setuid, getuid())); }
static int p_chown_self(void) {
    char path[] = "/tmp/rsbox-probe-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return errno;
    int e = result(fchown(fd, getuid(), getgid()));
    close(fd);
    unlink(path);
    return e;
}

/* Escape battery: files and fds (the launcher's masks, not seccomp, refuse these). */
static int open_probe(const char *path, int flags) { return fd_result(open(path, flags | O_CLOEXEC)); }
static int p_proc_sys_write(void) { return open_probe("/proc/sys/kernel/hostname", O_WRONLY); }
static int p_sysrq_write(void) { return open_probe("/proc/sysrq-trigger", O_WRONLY); }
static int p_self_exe_write(void) { return open_probe("/proc/self/exe", O_WRONLY); }
static int p_pid1_exe_write(void) { return open_probe("/proc/1/exe", O_WRONLY); }
static int p_tmp_write(void) { /* control: the same open path where writing is allowed */
    int e = open_probe("/tmp/rsbox-probe-write", O_WRONLY | O_CREAT);
    unlink("/tmp/rsbox-probe-write");
    return e;
}
/* Reading the kernel's memory: 0 only if bytes come back (a /dev/null mask reads 0). */
static int p_kcore_read(void) {
    int fd = open("/proc/kcore", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    char buf[64];
    ssize_t n = read(fd, buf, sizeof buf);
    int e = n < 0 ? errno : n == 0 ? ENODATA : 0;
    close(fd);
    return e;
}
/* 0 if this process holds any fd beyond 0-2 it did not open itself (a leak), else EBADF. */
static int p_leaked_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return errno;
    int own = dirfd(d), leaked = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] != '.' && fd > 2 && fd != own) {
            char link[64], target[256];
            snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
            ssize_t n = readlink(link, target, sizeof target - 1);
            target[n > 0 ? n : 0] = 0;
            fprintf(stderr, "probe: leaked fd %d -> %s\n", fd, target);
            leaked = 1;
        }
    }
    closedir(d);
    return leaked ? 0 : EBADF;
}
/* ptrace/kill of the pid in $PROBE_PID (the host pid of rsbox's FUSE server). */
static pid_t target_pid(void) {
    const char *s = getenv("PROBE_PID");
    return s ? (pid_t)atoi(s) : 0;
}
static int p_ptrace_target(void) {
    pid_t pid = target_pid();
    if (pid <= 0)
        return EINVAL;
    int e = result(ptrace(PTRACE_ATTACH, pid, NULL, NULL));
    if (e == 0)
        ptrace(PTRACE_DETACH, pid, NULL, NULL);
    return e;
}
static int p_kill_target(void) {
    pid_t pid = target_pid();
    return pid <= 0 ? EINVAL : result(kill(pid, 0));
}

static void *thread_main(void *arg) { return arg; }
/* glibc >= 2.34 tries clone3 first and falls back to clone on ENOSYS. */
static int p_pthread(void) {
    pthread_t t;
    int e = pthread_create(&t, NULL, thread_main, NULL);
    if (e == 0)
        pthread_join(t, NULL);
    return e;
}

/* ---- Sealing the process tree (tests/e2e/test_seal.py) --------------------------------
 * Plain probes here follow the convention above (0 = the attempt worked). The commands
 * further down take arguments; for them too 0 means "the attack worked" unless the line
 * says it counts something. */

/* Stop a process for inspection the way PTRACE_ATTACH does (same permission check,
 * PTRACE_MODE_ATTACH), but with PTRACE_SEIZE + PTRACE_INTERRUPT: no SIGSTOP is queued, so
 * the victim never stays stopped after we let it go. A negative number once it is
 * stopped under us (hand it to release()), else the errno of the attempt. */
static int seize_stop(pid_t pid) {
    if (ptrace(PTRACE_SEIZE, pid, NULL, NULL) < 0)
        return errno;
    ptrace(PTRACE_INTERRUPT, pid, NULL, NULL);
    for (;;) {
        int st = 0;
        pid_t w = waitpid(pid, &st, __WALL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return errno;
        if (WIFEXITED(st) || WIFSIGNALED(st))
            return ESRCH; /* gone before it stopped */
        if (WIFSTOPPED(st)) {
            /* An interrupt/group stop (event in the high bits) passes nothing on; a
             * signal-delivery stop hands its signal back on detach. */
            int sig = (st >> 16) ? 0 : WSTOPSIG(st);
            return -1 - sig; /* stopped: the caller detaches with release() */
        }
    }
}
static void release(pid_t pid, int stopped) {
    long sig = -1 - stopped;
    ptrace(PTRACE_DETACH, pid, NULL, (void *)sig);
}

/* Read a /proc file into buf (NUL-terminated, at most size-1 bytes): its length or -errno. */
static ssize_t slurp(const char *path, char *buf, size_t size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t n = 0;
    while (n < size - 1) {
        ssize_t r = read(fd, buf + n, size - 1 - n);
        if (r < 0) {
            int e = errno;
            close(fd);
            return -e;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    return (ssize_t)n;
}
static int has(const char *buf, ssize_t n, const char *needle) {
    return n > 0 && *needle && memmem(buf, (size_t)n, needle, strlen(needle)) != NULL;
}
/* For printing: NULs (argv/env separators) become spaces. */
static void printable(char *buf, ssize_t n) {
    for (ssize_t i = 0; i < n; i++)
        if (buf[i] == 0 || buf[i] == '\n')
            buf[i] = ' ';
}

static void keep_living(void) {
    prctl(PR_SET_PDEATHSIG, 0); /* what the container may always do */
    signal(SIGTERM, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGINT, SIG_IGN);
}
static void quiet_stdio(void) {
    int fd = open("/dev/null", O_RDWR);
    if (fd >= 0) {
        dup2(fd, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        if (fd > 2)
            close(fd);
    }
}
static void hang(void) {
    for (;;)
        pause();
}
/* Sleep until killed (the sibling that watch_pids execs with a secret in its env). */
static int p_pause(void) {
    hang();
    return 0;
}

/* Terminals. */
static int p_dev_tty_open(void) { return fd_result(open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC)); }
static int is_tty(int fd) { return isatty(fd) ? 0 : errno; }
static int p_isatty_fd0(void) { return is_tty(0); }
static int p_isatty_fd1(void) { return is_tty(1); }
static int p_isatty_fd2(void) { return is_tty(2); }
/* Non-canonical, no echo on fd 0: what TIOCSTI puts there is readable at once. */
static int p_tty_raw(void) {
    struct termios t;
    if (tcgetattr(0, &t) < 0)
        return errno;
    t.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
    t.c_cc[VMIN] = 0;
    t.c_cc[VTIME] = 0;
    return result(tcsetattr(0, TCSANOW, &t));
}

/* Capabilities. A bridge in the container's own network namespace (gone with it). */
static int p_bridge_add(void) {
    int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return errno;
    char name[IFNAMSIZ] = "rsboxprobe0";
    int e = result(ioctl(s, SIOCBRADDBR, name));
    if (e == 0)
        ioctl(s, SIOCBRDELBR, name);
    close(s);
    return e;
}
/* Set lo's MTU to the value it has: needs CAP_NET_ADMIN, changes nothing. */
static int p_net_admin_mtu(void) {
    int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    int e = result(ioctl(s, SIOCGIFMTU, &ifr));
    if (e == 0)
        e = result(ioctl(s, SIOCSIFMTU, &ifr));
    close(s);
    return e;
}

/* --init: ptrace of a child of our own (the control for ptrace_pid 1). */
static int p_ptrace_sibling(void) {
    pid_t pid = fork();
    if (pid < 0)
        return errno;
    if (pid == 0)
        hang();
    int e = seize_stop(pid);
    if (e < 0) {
        release(pid, e);
        e = 0;
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, __WALL);
    return e;
}

/* How many processes in /proc are zombies (state Z). */
static int count_zombies(void) {
    DIR *d = opendir("/proc");
    if (d == NULL)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%d/stat", atoi(e->d_name));
        ssize_t len = slurp(path, buf, sizeof buf);
        char *close_paren = len > 0 ? strrchr(buf, ')') : NULL;
        if (close_paren != NULL && close_paren[1] == ' ' && close_paren[2] == 'Z')
            n++;
    }
    closedir(d);
    return n;
}
/* An orphan that exits 0.1 s after its parent: whoever it is reparented to (pid 1) must
 * reap it. Prints the number of zombies left 0.6 s later (0 = reaped). */
static int p_orphan_zombies(void) {
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        if (fork() == 0) {
            usleep(100000);
            _exit(0);
        }
        _exit(0);
    }
    waitpid(pid, NULL, 0);
    usleep(600000);
    return count_zombies();
}

/* Commands: probes with arguments. */
typedef int (*command_fn)(char **args);

/* tiocsti TEXT: push TEXT into the input of fds 0, 1, 2 and /dev/tty with TIOCSTI (one
 * ioctl per byte) and try TIOCLINUX (TIOCL_GETSHIFTSTATE, harmless) on each: a line
 * "tiocsti_fdN E" / "tioclinux_fdN E" (N = 0, 1, 2, tty) each, 0 = it reached a terminal. */
static int inject(int fd, const char *text) {
    for (const char *c = text; *c; c++)
        if (ioctl(fd, TIOCSTI, c) < 0)
            return errno;
    return 0;
}
static int linux_ioctl(int fd) {
    char sub = 6; /* TIOCL_GETSHIFTSTATE */
    return result(ioctl(fd, TIOCLINUX, &sub));
}
static int c_tiocsti(char **args) {
    for (int fd = 0; fd < 3; fd++) {
        printf("tiocsti_fd%d %d\n", fd, inject(fd, args[0]));
        printf("tioclinux_fd%d %d\n", fd, linux_ioctl(fd));
    }
    int tty = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    int e = tty < 0 ? errno : 0;
    printf("tiocsti_tty %d\n", tty < 0 ? e : inject(tty, args[0]));
    printf("tioclinux_tty %d\n", tty < 0 ? e : linux_ioctl(tty));
    if (tty >= 0)
        close(tty);
    return 0;
}
/* tty_readback TEXT: 0 if TEXT arrives on fd 0 within 2 s, else ENODATA (or read's errno). */
static int c_tty_readback(char **args) {
    char buf[4096];
    size_t n = 0;
    for (int tries = 0; tries < 20 && n < sizeof buf - 1; tries++) {
        struct pollfd p = {0, POLLIN, 0};
        if (poll(&p, 1, 100) < 0)
            return errno;
        if (!(p.revents & POLLIN))
            continue;
        ssize_t r = read(0, buf + n, sizeof buf - 1 - n);
        if (r < 0)
            return errno;
        if (r == 0)
            break;
        n += (size_t)r;
        buf[n] = 0;
        if (strstr(buf, args[0]) != NULL)
            return 0;
    }
    return ENODATA;
}

/* clear_pdeathsig TAG: clear the parent-death signal, ignore TERM/HUP/INT, print
 * "clear_pdeathsig_ready 0" and sleep until SIGKILL (TAG only marks the process's argv). */
static int c_clear_pdeathsig(char **args) {
    (void)args;
    keep_living();
    printf("clear_pdeathsig_ready 0\n");
    fflush(stdout);
    hang();
    return 0;
}
/* daemon TAG: a double-forked daemon in a session of its own, detached from stdio,
 * that clears its parent-death signal and ignores TERM/HUP/INT. */
static int c_daemon(char **args) {
    (void)args;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return errno;
    if (pid == 0) {
        if (setsid() < 0)
            _exit(errno);
        pid_t grandchild = fork();
        if (grandchild < 0)
            _exit(errno);
        if (grandchild == 0) {
            keep_living();
            quiet_stdio();
            hang();
        }
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 255;
}
/* new_session TAG: a child in a new session (setsid), otherwise like the daemon. */
static int c_new_session(char **args) {
    (void)args;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return errno;
    if (pid == 0) {
        if (setsid() < 0)
            _exit(errno);
        keep_living();
        quiet_stdio();
        hang();
    }
    return 0;
}

/* proc_leaks PID HEX[,HEX...]: does /proc/PID/{environ,cmdline,exe} hold a needle? The
 * needles come hex-encoded, so that they are not in our own argv verbatim (an init may
 * legitimately carry its command's argv in its own). Lines environ_leak, cmdline_leak,
 * exe_leak: 0 = a needle is there, ENODATA = readable and clean, else the errno of the read
 * (EACCES, ESRCH, ...). */
static int unhex(const char *hex, char *out, size_t size) {
    size_t n = 0;
    for (; hex[0] && hex[1] && n < size - 1; hex += 2) {
        unsigned int byte;
        if (sscanf(hex, "%2x", &byte) != 1)
            return -1;
        out[n++] = (char)byte;
    }
    out[n] = 0;
    return (int)n;
}
static int leak_of(const char *buf, ssize_t n, const char *needles) {
    if (n < 0)
        return (int)-n;
    char copy[2048], needle[1024];
    snprintf(copy, sizeof copy, "%s", needles);
    for (char *save = NULL, *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
        if (unhex(t, needle, sizeof needle) > 0 && has(buf, n, needle))
            return 0;
    return ENODATA;
}
static int c_proc_leaks(char **args) {
    static char buf[65536];
    char path[64];
    int pid = atoi(args[0]);
    snprintf(path, sizeof path, "/proc/%d/environ", pid);
    ssize_t n = slurp(path, buf, sizeof buf);
    printf("environ_leak %d\n", leak_of(buf, n, args[1]));
    snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
    n = slurp(path, buf, sizeof buf);
    printf("cmdline_leak %d\n", leak_of(buf, n, args[1]));
    snprintf(path, sizeof path, "/proc/%d/exe", pid);
    n = readlink(path, buf, sizeof buf - 1);
    if (n >= 0)
        buf[n] = 0;
    printf("exe_leak %d\n", leak_of(buf, n < 0 ? -errno : n, args[1]));
    return 0;
}
/* ptrace_pid PID: stop PID under ptrace and let it go; the errno (0 = attached). */
static int c_ptrace_pid(char **args) {
    pid_t pid = (pid_t)atoi(args[0]);
    if (pid <= 0)
        return EINVAL;
    int e = seize_stop(pid);
    if (e < 0) {
        release(pid, e);
        return 0;
    }
    return e;
}

/* abstract_connect NAME: connect to the abstract unix socket "\0NAME" and read one byte;
 * the errno (0 = connected and the server answered). Abstract sockets belong to the
 * network namespace: a host's X11 display or session bus on one is reachable only from
 * the host's network namespace. */
static int c_abstract_connect(char **args) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    size_t len = strlen(args[0]);
    if (len + 1 > sizeof addr.sun_path)
        return ENAMETOOLONG;
    memcpy(addr.sun_path + 1, args[0], len);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno;
    int rc = connect(fd, (struct sockaddr *)&addr, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len));
    int e = rc < 0 ? errno : 0;
    char c;
    if (e == 0 && read(fd, &c, 1) != 1)
        e = EPROTO;
    close(fd);
    return e;
}

/* watch_pids SECONDS SECRET CONTROL: the attacker inside the container. Until SIGTERM (or
 * SECONDS), loop over /proc as fast as possible and, for every pid but our own, read its
 * status and stat, stop it under ptrace, read its exe link and environ, and let it go;
 * again on every pass until it was stopped while running a file of the container (it has
 * become a command of the container). Counts of pids, one line each:
 *   watch_pids_seen          pids seen
 *   watch_pids_attached      pids stopped under ptrace at least once
 *   watch_pids_secret        pids whose environ held SECRET (the caller's, never a container's)
 *   watch_pids_host_exe      pids stopped while /proc/PID/exe named a file not in our root
 *   watch_pids_control       pids whose environ held CONTROL (given to them legitimately)
 *   watch_pids_no_nnp        pids seen with NoNewPrivs 0
 *   watch_pids_no_filter     pids seen with Seccomp 0 (no filter)
 *   watch_pids_host_tty      pids seen with a controlling terminal (tty_nr) of a session
 *                            led from outside our pid namespace (session 0 in
 *                            /proc/PID/stat): the caller's terminal
 * (a status or stat that reads but does not parse counts as a catch: fail closed), and for
 * the sibling this probe starts itself (SECRET in its environ, sleeping):
 *   watch_pids_sibling_attach  0 = stopped under ptrace
 *   watch_pids_sibling_secret  0 = SECRET read from its environ
 * The first catch of each kind per pid is described on stderr. "watch_pids_ready 0" after
 * the first pass. */
#define WATCH_MAX (1 << 22) /* PID_MAX_LIMIT on 64-bit */
enum { W_SEEN, W_DONE, W_ATTACHED, W_SECRET, W_HOSTEXE, W_CONTROL, W_NONNP, W_NOFILTER,
       W_HOSTTTY, W_MAPS };
static unsigned char w_map[W_MAPS][WATCH_MAX / 8];
static int w_count[W_MAPS];
static int bit(int map, pid_t pid) { return w_map[map][pid / 8] >> (pid % 8) & 1; }
static int mark(int map, pid_t pid) { /* 1 if it was not set */
    int was = bit(map, pid);
    w_map[map][pid / 8] |= (unsigned char)(1 << (pid % 8));
    return !was;
}
static volatile sig_atomic_t w_stop;
static void on_term(int sig) {
    (void)sig;
    w_stop = 1;
}
static char env_buf[65536];

struct look {
    int stopped; /* 0 = it was stopped under ptrace, else the errno */
    int secret, control, host_exe, no_nnp, no_filter, host_tty;
    char exe[512];
};
/* The number after "\nNAME:" in a /proc status, or -1. */
static int status_field(const char *buf, const char *name) {
    const char *p = strstr(buf, name);
    return p ? atoi(p + strlen(name)) : -1;
}
static void examine(pid_t pid, const char *secret, const char *control, struct look *l) {
    char path[64], buf[4096];
    memset(l, 0, sizeof *l);
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    if (slurp(path, buf, sizeof buf) > 0) {
        int nnp = status_field(buf, "\nNoNewPrivs:"), filter = status_field(buf, "\nSeccomp:");
        l->no_nnp = nnp <= 0;
        l->no_filter = filter <= 0;
    }
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    if (slurp(path, buf, sizeof buf) > 0) {
        char *close_paren = strrchr(buf, ')'), state;
        int ppid, pgrp, session = 0, tty = 0;
        int parsed = close_paren != NULL && sscanf(close_paren + 1, " %c %d %d %d %d", &state,
                                                   &ppid, &pgrp, &session, &tty) == 5;
        l->host_tty = !parsed || (session == 0 && tty != 0);
    }
    int stopped = seize_stop(pid);
    l->stopped = stopped < 0 ? 0 : stopped;
    if (stopped < 0) {
        snprintf(path, sizeof path, "/proc/%d/exe", pid);
        ssize_t n = readlink(path, l->exe, sizeof l->exe - 1);
        l->exe[n > 0 ? n : 0] = 0;
        struct stat st;
        l->host_exe = n > 0 && stat(l->exe, &st) < 0;
    }
    snprintf(path, sizeof path, "/proc/%d/environ", pid);
    ssize_t n = slurp(path, env_buf, sizeof env_buf);
    l->secret = has(env_buf, n, secret);
    l->control = has(env_buf, n, control);
    if (stopped < 0)
        release(pid, stopped);
}
static void describe(pid_t pid, const char *what, const char *exe) {
    char path[64], cmd[512];
    snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
    ssize_t c = slurp(path, cmd, sizeof cmd);
    printable(cmd, c);
    fprintf(stderr, "watch_pids: caught pid %d (%s) exe=%s cmdline=%s\n", pid, what, exe, cmd);
    fflush(stderr);
}
/* Count pid under map if it is caught there for the first time; describe it if asked. */
static void tally(int map, int caught, pid_t pid, const char *what, const char *exe) {
    if (caught && mark(map, pid)) {
        w_count[map] += 1;
        if (what != NULL)
            describe(pid, what, exe);
    }
}

static int c_watch_pids(char **args) {
    int seconds = atoi(args[0]);
    const char *secret = args[1], *control = args[2];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    /* The sibling: SECRET in its environ, running once we loop (a CLOEXEC pipe closes on
     * its execve). */
    int gate[2];
    if (pipe2(gate, O_CLOEXEC) < 0)
        return errno;
    fflush(stdout);
    pid_t sibling = fork();
    if (sibling < 0)
        return errno;
    if (sibling == 0) {
        char var[1024];
        snprintf(var, sizeof var, "RSBOX_SIBLING=%s", secret);
        char *argv[] = {"seccomp-probe", "pause", NULL};
        char *envp[] = {var, NULL};
        execve("/proc/self/exe", argv, envp);
        _exit(127);
    }
    close(gate[1]);
    char byte;
    while (read(gate[0], &byte, 1) < 0 && errno == EINTR)
        ;
    close(gate[0]);

    pid_t self = getpid();
    int sibling_attach = ENOENT, sibling_secret = ENODATA, ready = 0;
    time_t deadline = time(NULL) + seconds;
    while (!w_stop && time(NULL) < deadline) {
        DIR *d = opendir("/proc");
        if (d == NULL)
            return errno;
        struct dirent *e;
        while (!w_stop && (e = readdir(d)) != NULL) {
            if (e->d_name[0] < '1' || e->d_name[0] > '9')
                continue;
            pid_t pid = (pid_t)atoi(e->d_name);
            if (pid == self || pid >= WATCH_MAX || bit(W_DONE, pid))
                continue;
            struct look l;
            examine(pid, secret, control, &l);
            if (pid == sibling) {
                sibling_attach = l.stopped;
                if (l.secret)
                    sibling_secret = 0;
            } else {
                tally(W_SEEN, 1, pid, NULL, NULL);
                tally(W_ATTACHED, l.stopped == 0, pid, NULL, NULL);
                tally(W_SECRET, l.secret, pid, "the secret in its environ", l.exe);
                tally(W_HOSTEXE, l.host_exe, pid, "a host binary", l.exe);
                tally(W_CONTROL, l.control, pid, NULL, NULL);
                tally(W_NONNP, l.no_nnp, pid, "no no_new_privs", l.exe);
                tally(W_NOFILTER, l.no_filter, pid, "no seccomp filter", l.exe);
                tally(W_HOSTTTY, l.host_tty, pid, "a terminal from outside", l.exe);
            }
            /* Done with a pid once it is gone, or once it was stopped while running a
             * file of the container (it has become the container's command: nothing of
             * the host can come back to it); until then, look again on every pass. */
            if ((l.stopped == 0 && !l.host_exe) || l.stopped == ESRCH)
                mark(W_DONE, pid);
        }
        closedir(d);
        if (!ready) {
            ready = 1;
            printf("watch_pids_ready 0\n");
            fflush(stdout);
        }
    }
    kill(sibling, SIGKILL);
    waitpid(sibling, NULL, 0);
    static const struct {
        const char *name;
        int map;
    } lines[] = {{"seen", W_SEEN},         {"attached", W_ATTACHED},   {"secret", W_SECRET},
                 {"host_exe", W_HOSTEXE},  {"control", W_CONTROL},     {"no_nnp", W_NONNP},
                 {"no_filter", W_NOFILTER}, {"host_tty", W_HOSTTTY}};
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        printf("watch_pids_%s %d\n", lines[i].name, w_count[lines[i].map]);
    printf("watch_pids_sibling_attach %d\nwatch_pids_sibling_secret %d\n", sibling_attach,
           sibling_secret);
    return 0;
}

static const struct {
    const char *name;
    probe_fn fn;
} probes[] = {
    {"mount", p_mount},
    {"umount2", p_umount2},
    {"pivot_root", p_pivot_root},
    {"unshare_user", p_unshare_user},
    {"unshare_ns", p_unshare_ns},
    {"clone_newuser", p_clone_newuser},
    {"clone3", p_clone3},
    {"setns", p_setns},
    {"keyctl", p_keyctl},
    {"add_key", p_add_key},
    {"request_key", p_request_key},
    {"kexec_load", p_kexec_load},
    {"kexec_file_load", p_kexec_file_load},
    {"open_by_handle_at", p_open_by_handle_at},
    {"bpf", p_bpf},
    {"perf_event_open", p_perf_event_open},
    {"userfaultfd", p_userfaultfd},
    {"io_uring_setup", p_io_uring_setup},
    {"init_module", p_init_module},
    {"finit_module", p_finit_module},
    {"delete_module", p_delete_module},
    {"ioctl_tiocsti", p_ioctl_tiocsti},
    {"ioctl_tiocsti_high", p_ioctl_tiocsti_high},
    {"ioctl_tioclinux", p_ioctl_tioclinux},
    {"ioctl_tcgets", p_ioctl_tcgets},
    {"getpid", p_getpid},
    {"open_devnull", p_open_devnull},
    {"fork", p_fork},
    {"pthread", p_pthread},
    {"mseal", p_mseal},
    /* after the original table: the lists in probe_build.py follow this order */
    {"unshare_pid", p_unshare_pid},
    {"unshare_net", p_unshare_net},
    {"unshare_ipc", p_unshare_ipc},
    {"unshare_uts", p_unshare_uts},
    {"unshare_cgroup", p_unshare_cgroup},
    {"unshare_time", p_unshare_time},
    {"clone_newns", p_clone_newns},
    {"clone_newpid", p_clone_newpid},
    {"clone_newnet", p_clone_newnet},
    {"clone_newipc", p_clone_newipc},
    {"clone_newuts", p_clone_newuts},
    {"clone_newcgroup", p_clone_newcgroup},
    {"socket_unix", p_socket_unix},
    {"socket_inet", p_socket_inet},
    {"socket_inet6", p_socket_inet6},
    {"socket_netlink", p_socket_netlink},
    {"socket_packet", p_socket_packet},
    {"socket_alg", p_socket_alg},
    {"socket_vsock", p_socket_vsock},
    {"socket_vsock_high", p_socket_vsock_high},
    {"personality_query", p_personality_query},
    {"personality_linux", p_personality_linux},
    {"personality_linux32", p_personality_linux32},
    {"personality_no_aslr", p_personality_no_aslr},
    {"ptrace", p_ptrace},
    {"process_vm_readv", p_process_vm_readv},
    {"kcmp", p_kcmp},
    {"pidfd_getfd", p_pidfd_getfd},
    {"process_madvise", p_process_madvise},
    {"chroot", p_chroot},
    {"sethostname", p_sethostname},
    {"syslog", p_syslog},
    {"acct", p_acct},
    {"clock_settime", p_clock_settime},
    {"settimeofday", p_settimeofday},
    {"reboot", p_reboot},
    {"swapon", p_swapon},
    {"quotactl", p_quotactl},
    {"name_to_handle_at", p_name_to_handle_at},
    {"fanotify_init", p_fanotify_init},
    {"set_mempolicy", p_set_mempolicy},
    {"mbind", p_mbind},
    {"modify_ldt", p_modify_ldt},
    {"iopl", p_iopl},
    {"uname", p_uname},
    {"getcwd", p_getcwd},
    {"stat_root", p_stat_root},
    {"setuid_self", p_setuid_self},
    {"chown_self", p_chown_self},
    {"proc_sys_write", p_proc_sys_write},
    {"sysrq_write", p_sysrq_write},
    {"self_exe_write", p_self_exe_write},
    {"pid1_exe_write", p_pid1_exe_write},
    {"tmp_write", p_tmp_write},
    {"kcore_read", p_kcore_read},
    {"leaked_fds", p_leaked_fds},
    {"ptrace_target", p_ptrace_target},
    {"kill_target", p_kill_target},
    /* sealing the process tree (probe_build.SEAL) */
    {"pause", p_pause},
    {"dev_tty_open", p_dev_tty_open},
    {"isatty_fd0", p_isatty_fd0},
    {"isatty_fd1", p_isatty_fd1},
    {"isatty_fd2", p_isatty_fd2},
    {"tty_raw", p_tty_raw},
    {"bridge_add", p_bridge_add},
    {"net_admin_mtu", p_net_admin_mtu},
    {"ptrace_sibling", p_ptrace_sibling},
    {"orphan_zombies", p_orphan_zombies},
};

/* Commands: NAME and how many arguments follow it (probe_build.COMMANDS, in this order). */
static const struct {
    const char *name;
    int nargs;
    command_fn fn;
} commands[] = {
    {"tiocsti", 1, c_tiocsti},
    {"tty_readback", 1, c_tty_readback},
    {"clear_pdeathsig", 1, c_clear_pdeathsig},
    {"daemon", 1, c_daemon},
    {"new_session", 1, c_new_session},
    {"proc_leaks", 2, c_proc_leaks},
    {"ptrace_pid", 1, c_ptrace_pid},
    {"watch_pids", 3, c_watch_pids},
    {"abstract_connect", 1, c_abstract_connect},
};

int main(int argc, char **argv) {
    size_t n = sizeof probes / sizeof probes[0];
    size_t ncmd = sizeof commands / sizeof commands[0];
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < n; i++)
            printf("%s\n", probes[i].name);
        for (size_t i = 0; i < ncmd; i++)
            printf("%s\n", commands[i].name);
        return 0;
    }
    if (argc < 2) {
        fprintf(stderr, "usage: %s NAME... | COMMAND ARG... | --list\n", argv[0]);
        return 2;
    }
    for (int a = 1; a < argc; a++) {
        size_t i;
        for (i = 0; i < n; i++)
            if (strcmp(argv[a], probes[i].name) == 0)
                break;
        if (i < n) {
            errno = 0;
            int e = probes[i].fn();
            printf("%s %d\n", probes[i].name, e);
            fflush(stdout);
            continue;
        }
        for (i = 0; i < ncmd; i++)
            if (strcmp(argv[a], commands[i].name) == 0)
                break;
        if (i == ncmd) {
            fprintf(stderr, "probe: unknown probe %s\n", argv[a]);
            return 2;
        }
        if (a + commands[i].nargs >= argc) {
            fprintf(stderr, "probe: %s takes %d argument(s)\n", argv[a], commands[i].nargs);
            return 2;
        }
        errno = 0;
        int e = commands[i].fn(argv + a + 1);
        printf("%s %d\n", commands[i].name, e);
        fflush(stdout);
        a += commands[i].nargs;
    }
    return 0;
}
