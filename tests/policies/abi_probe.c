/*
 * rsbox ABI probe: the same syscall made through each syscall ABI of an x86_64 kernel.
 *
 *   abi-probe NAME...   for each NAME, make one syscall and print "NAME ERRNO"
 *                       (0 = the call succeeded); exit 0, or 2 on an unknown name
 *   abi-probe --list    print every probe name
 *
 * One static x86_64 binary reaches all three ABIs an x86_64 kernel offers:
 *
 * - x86_64: the `syscall` instruction with the native number;
 * - i386:   `int $0x80` from 64-bit code. The kernel runs it as a 32-bit (compat) syscall:
 *           seccomp sees AUDIT_ARCH_I386 and i386 numbers, and only the low 32 bits of
 *           the registers count, so pointers handed over must lie below 4 GiB (MAP_32BIT);
 * - x32:    the `syscall` instruction with __X32_SYSCALL_BIT (0x40000000) in the number.
 *           seccomp sees AUDIT_ARCH_X86_64 with that bit set; a kernel built without
 *           CONFIG_X86_X32_ABI answers ENOSYS itself, but only after seccomp has judged it.
 *
 * The socket probes are the hole the i386 socketcall(2) multiplexer opens in a filter with
 * argument rules on socket(2): socketcall(SYS_SOCKET, args) passes the family through a
 * pointer, which a BPF filter cannot read. Sockets that get created are closed again.
 * x86_64 only (tests skip elsewhere). Kept apart from probe.c on purpose: built the same
 * way, by abi_probe_build.py.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#if !defined(__x86_64__)
#error "abi_probe.c is for x86_64"
#endif

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#define X32_SYSCALL_BIT 0x40000000L

/* i386 numbers (arch/x86/entry/syscalls/syscall_32.tbl) and socketcall's sub-calls. */
#define I386_GETPID 20
#define I386_SOCKETCALL 102
#define I386_SOCKET 359
#define SYS_SOCKET_CALL 1 /* SYS_SOCKET in linux/net.h */

/* x86_64 numbers; x32 uses the same ones with X32_SYSCALL_BIT for these calls. */
#define X64_GETPID 39
#define X64_SOCKET 41

/* A probe returns 0 on success or the errno of the failed attempt. */
typedef int (*probe_fn)(void);

/* A raw result (>= 0, or -errno as the kernel returns it) -> 0 or errno. */
static int raw_result(long rc) { return rc < 0 && rc > -4096 ? (int)-rc : 0; }

static long int80(long nr, long a, long b, long c) {
    long ret;
    /* r8-r11 are listed because kernels before 4.17 did not preserve them here. */
    __asm__ volatile("int $0x80"
                     : "=a"(ret)
                     : "a"(nr), "b"(a), "c"(b), "d"(c)
                     : "memory", "r8", "r9", "r10", "r11");
    return (int)ret; /* a compat syscall returns a 32-bit value */
}

static long native(long nr, long a, long b, long c) {
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c)
                     : "memory", "rcx", "r11");
    return ret;
}

/* A created fd is closed with a native close(2): that ABI is allowed everywhere. */
static int fd_result(long rc) {
    if (rc >= 0) {
        close((int)rc);
        return 0;
    }
    return raw_result(rc);
}

/* socketcall(SYS_SOCKET, {family, type, protocol}): the array must be addressable with 32
 * bits, and its elements are the i386 `unsigned long`, i.e. 32 bits. */
static int i386_socketcall_socket(uint32_t family, uint32_t type) {
    uint32_t *args = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    if (args == MAP_FAILED)
        return errno;
    args[0] = family;
    args[1] = type;
    args[2] = 0;
    long rc = int80(I386_SOCKETCALL, SYS_SOCKET_CALL, (long)(uintptr_t)args, 0);
    munmap(args, 4096);
    return fd_result(rc);
}

static int p_x86_64_getpid(void) { return raw_result(native(X64_GETPID, 0, 0, 0)); }
static int p_x86_64_socket_unix(void) { return fd_result(native(X64_SOCKET, AF_UNIX, SOCK_STREAM, 0)); }
static int p_x86_64_socket_vsock(void) { return fd_result(native(X64_SOCKET, AF_VSOCK, SOCK_STREAM, 0)); }
static int p_x86_64_socket_netlink(void) { return fd_result(native(X64_SOCKET, AF_NETLINK, SOCK_RAW, 0)); }

static int p_i386_getpid(void) { return raw_result(int80(I386_GETPID, 0, 0, 0)); }
static int p_i386_socketcall_unix(void) { return i386_socketcall_socket(AF_UNIX, SOCK_STREAM); }
static int p_i386_socketcall_vsock(void) { return i386_socketcall_socket(AF_VSOCK, SOCK_STREAM); }
static int p_i386_socketcall_netlink(void) { return i386_socketcall_socket(AF_NETLINK, SOCK_RAW); }
static int p_i386_socket_vsock(void) { return fd_result(int80(I386_SOCKET, AF_VSOCK, SOCK_STREAM, 0)); }
static int p_i386_socket_netlink(void) { return fd_result(int80(I386_SOCKET, AF_NETLINK, SOCK_RAW, 0)); }

static int p_x32_getpid(void) { return raw_result(native(X32_SYSCALL_BIT | X64_GETPID, 0, 0, 0)); }
static int p_x32_socket_vsock(void) {
    return fd_result(native(X32_SYSCALL_BIT | X64_SOCKET, AF_VSOCK, SOCK_STREAM, 0));
}
static int p_x32_socket_netlink(void) {
    return fd_result(native(X32_SYSCALL_BIT | X64_SOCKET, AF_NETLINK, SOCK_RAW, 0));
}

static const struct {
    const char *name;
    probe_fn fn;
} PROBES[] = {
    {"x86_64_getpid", p_x86_64_getpid},
    {"x86_64_socket_unix", p_x86_64_socket_unix},
    {"x86_64_socket_vsock", p_x86_64_socket_vsock},
    {"x86_64_socket_netlink", p_x86_64_socket_netlink},
    {"i386_getpid", p_i386_getpid},
    {"i386_socketcall_unix", p_i386_socketcall_unix},
    {"i386_socketcall_vsock", p_i386_socketcall_vsock},
    {"i386_socketcall_netlink", p_i386_socketcall_netlink},
    {"i386_socket_vsock", p_i386_socket_vsock},
    {"i386_socket_netlink", p_i386_socket_netlink},
    {"x32_getpid", p_x32_getpid},
    {"x32_socket_vsock", p_x32_socket_vsock},
    {"x32_socket_netlink", p_x32_socket_netlink},
};

int main(int argc, char **argv) {
    size_t n = sizeof(PROBES) / sizeof(PROBES[0]);
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < n; i++)
            printf("%s\n", PROBES[i].name);
        return 0;
    }
    for (int a = 1; a < argc; a++) {
        size_t i = 0;
        while (i < n && strcmp(argv[a], PROBES[i].name) != 0)
            i++;
        if (i == n) {
            fprintf(stderr, "abi-probe: unknown probe %s\n", argv[a]);
            return 2;
        }
        printf("%s %d\n", argv[a], PROBES[i].fn());
        fflush(stdout);
    }
    return 0;
}
