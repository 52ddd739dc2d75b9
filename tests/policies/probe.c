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
#include <sys/ioctl.h>
#include <sys/mount.h>
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
static int p_unshare_user(void) { return result(unshare(CLONE_NEWUSER)); }
static int p_unshare_ns(void) { return result(unshare(CLONE_NEWNS)); }
static int p_clone_newuser(void) {
    return child_result(syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0));
}
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
static int p_userfaultfd(void) { return fd_result(syscall(SYS_userfaultfd, O_CLOEXEC)); }
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
