/*
 * rsbox seccomp probe: one static binary, many named probes.
 *
 *   probe NAME...     for each NAME, attempt exactly one syscall and print "NAME ERRNO"
 *                     (0 = the call succeeded); exit 0, or 2 on an unknown name
 *   probe --list      print every probe name
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
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
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
};

int main(int argc, char **argv) {
    size_t n = sizeof probes / sizeof probes[0];
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < n; i++)
            printf("%s\n", probes[i].name);
        return 0;
    }
    if (argc < 2) {
        fprintf(stderr, "usage: %s NAME... | --list\n", argv[0]);
        return 2;
    }
    for (int a = 1; a < argc; a++) {
        size_t i;
        for (i = 0; i < n; i++)
            if (strcmp(argv[a], probes[i].name) == 0)
                break;
        if (i == n) {
            fprintf(stderr, "probe: unknown probe %s\n", argv[a]);
            return 2;
        }
        errno = 0;
        int e = probes[i].fn();
        printf("%s %d\n", probes[i].name, e);
        fflush(stdout);
    }
    return 0;
}
