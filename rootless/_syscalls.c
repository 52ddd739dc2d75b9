/* rootless._syscalls: the C half of rootless.syscalls (as _signal is signal's).

   Why C: Python 3.11 (Debian 12's, rsbox's floor) has no os.setns/os.unshare (3.12+),
   nor mount, pivot_root, prctl, capset or the seccomp syscall. ctypes reached them, but
   importing ctypes costs ~5 ms of CPU, and every `rsbox exec` and environment shim pays
   it before joining a container: a fifth of the warm shim's 25 ms budget (issue 13).

   Each function makes exactly one call and decides nothing: it returns the call's
   result, or -errno when it failed; rootless.syscalls turns that into OSError(errno,
   strerror, what), in one place. The GIL is released around every such call, as ctypes
   did: a mount onto a FUSE path may wait for a server thread of the same process. Three
   make a short fixed sequence instead, with the GIL held (said at each):
   default_signals, take_terminal and spawn, whose child shares our memory and which
   returns (pid, errno, step) so that the caller knows which step failed. The numbers
   of the syscalls libc does not wrap (pivot_root, seccomp, ioprio) come from the caller
   (rootless.syscalls.SYSCALL_NUMBERS, checked against the kernel's headers by tests). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

/* rootless.syscalls refuses a build that speaks another version (a checkout newer than
   the installed rsbox it loads this from): bump it with any change of a signature. */
#define INTERFACE 5

/* Make `call` without the GIL; return its result, or -errno if it is negative. */
#define RESULT(call)                                                                      \
    do {                                                                                  \
        long ret_;                                                                        \
        int err_ = 0;                                                                     \
        Py_BEGIN_ALLOW_THREADS;                                                           \
        ret_ = (call);                                                                    \
        if (ret_ < 0)                                                                     \
            err_ = errno;                                                                 \
        Py_END_ALLOW_THREADS;                                                             \
        return PyLong_FromLong(ret_ < 0 ? -err_ : ret_);                                  \
    } while (0)

/* "O&" converter: None -> NULL, bytes -> its buffer (the caller encodes). */
static int opt_bytes(PyObject *obj, void *out) {
    if (obj == Py_None) {
        *(const char **)out = NULL;
        return 1;
    }
    if (!PyBytes_Check(obj)) {
        PyErr_SetString(PyExc_TypeError, "expected bytes or None");
        return 0;
    }
    *(const char **)out = PyBytes_AS_STRING(obj);
    return 1;
}

static PyObject *sys_unshare(PyObject *self, PyObject *args) {
    int flags;
    if (!PyArg_ParseTuple(args, "i:unshare", &flags))
        return NULL;
    RESULT(unshare(flags));
}

static PyObject *sys_setns(PyObject *self, PyObject *args) {
    int fd, nstype;
    if (!PyArg_ParseTuple(args, "ii:setns", &fd, &nstype))
        return NULL;
    RESULT(setns(fd, nstype));
}

static PyObject *sys_mount(PyObject *self, PyObject *args) {
    const char *source, *target, *fstype, *data;
    unsigned long flags;
    if (!PyArg_ParseTuple(args, "O&yO&kO&:mount", opt_bytes, &source, &target, opt_bytes,
                          &fstype, &flags, opt_bytes, &data))
        return NULL;
    RESULT(mount(source, target, fstype, flags, data));
}

static PyObject *sys_umount2(PyObject *self, PyObject *args) {
    const char *target;
    int flags;
    if (!PyArg_ParseTuple(args, "yi:umount2", &target, &flags))
        return NULL;
    RESULT(umount2(target, flags));
}

static PyObject *sys_pivot_root(PyObject *self, PyObject *args) {
    long nr;
    const char *new_root, *put_old;
    if (!PyArg_ParseTuple(args, "lyy:pivot_root", &nr, &new_root, &put_old))
        return NULL;
    RESULT(syscall(nr, new_root, put_old));
}

/* keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL): a new anonymous session keyring (no libc
   wrapper without libkeyutils; the number is the caller's, as for pivot_root). */
static PyObject *sys_join_session_keyring(PyObject *self, PyObject *args) {
    long nr;
    if (!PyArg_ParseTuple(args, "l:join_session_keyring", &nr))
        return NULL;
    RESULT(syscall(nr, 1L /* KEYCTL_JOIN_SESSION_KEYRING */, (const char *)NULL));
}

/* The kernel's struct sigaction and sigset (64 signals), for the raw calls below. */
struct ksigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    uint64_t mask;
};

/* Every signal that is ignored or handled back to its default action, then none blocked:
   what a command starts with (become.py, step 11). Raw calls, for all 64: glibc's
   sigaction refuses 32 and 33 (which it keeps for itself), yet an ignore of them
   survives execve, and glibc's posix_spawn leaves them ignored in its child. With no
   handler and no flags the kernel needs no restorer. Syscalls only: safe in spawn's
   CLONE_VM child. 0 or -errno. */
static long reset_signals(void) {
    struct ksigaction dfl = {SIG_DFL, 0, NULL, 0}, old;
    uint64_t none = 0;
    for (int sig = 1; sig <= 64; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        if (syscall(SYS_rt_sigaction, sig, NULL, &old, sizeof old.mask) < 0)
            return -errno;
        if (old.handler != SIG_DFL && syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof dfl.mask) < 0)
            return -errno;
    }
    return syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, sizeof none) < 0 ? -errno : 0;
}

static PyObject *sys_default_signals(PyObject *self, PyObject *args) {
    return PyLong_FromLong(reset_signals());
}

/* The pty slave `tty` becomes the controlling terminal of our session (we lead one that
   has none) and stdin, stdout, stderr (Docker: with -t the pty is stdin too). */
static long take_terminal(int tty) {
    if (ioctl(tty, TIOCSCTTY, 0) < 0)
        return -errno;
    for (int fd = 0; fd <= 2; fd++)
        if (dup2(tty, fd) < 0)
            return -errno;
    if (tty > 2)
        close(tty);
    return 0;
}

static PyObject *sys_take_terminal(PyObject *self, PyObject *args) {
    int tty;
    if (!PyArg_ParseTuple(args, "i:take_terminal", &tty))
        return NULL;
    return PyLong_FromLong(take_terminal(tty));
}

/* spawn(): what the child does, and how far it got. */
struct spawn {
    const char *path;
    char **argv;
    char **envp;
    int tty;
    int err;
    const char *step;
};

static int spawn_child(void *arg) {
    struct spawn *s = arg;
    long r = setsid() < 0 ? -errno : 0;
    s->step = "setsid";
    if (r == 0 && s->tty >= 0) {
        s->step = "TIOCSCTTY";
        r = take_terminal(s->tty);
    }
    if (r == 0) {
        s->step = "rt_sigaction";
        r = reset_signals();
    }
    if (r == 0) {
        s->step = "execve";
        execve(s->path, s->argv, s->envp);
        r = -errno;
    }
    s->err = (int)-r;
    _exit(127);
}

/* NULL-terminated array of the buffers of a list (checked by the caller's "O!") of
   bytes (PyMem_Free it), or NULL with an exception set. The list keeps the bytes alive. */
static char **bytes_array(PyObject *list) {
    Py_ssize_t n = PyList_GET_SIZE(list);
    char **out = PyMem_Calloc((size_t)n + 1, sizeof *out);
    if (out == NULL)
        return (char **)PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(list, i);
        if (!PyBytes_Check(item)) {
            PyMem_Free(out);
            PyErr_SetString(PyExc_TypeError, "expected a list of bytes");
            return NULL;
        }
        out[i] = PyBytes_AS_STRING(item);
    }
    return out;
}

/* The process the container can see, for exec's E1 (become.py, step 10): a child that
   starts its own session, takes the pty `tty` (-1: none), has every signal at its
   default action and none blocked, and executes `path`. clone(CLONE_VM | CLONE_VFORK)
   as glibc's posix_spawn does, so no copy of the interpreter's memory is made (a fork
   and the child's Python cost ~1 ms of the warm shim's 25), but not posix_spawn itself:
   it leaves signals 32 and 33 ignored in the child (see reset_signals). Every signal is
   blocked around the clone, so no handler of ours runs in the child, which shares our
   memory and makes only syscalls. Returns (pid, 0, step) or, when a step failed (the
   child is reaped), (-1, errno, step). */
#define SPAWN_STACK (64 * 1024)
static PyObject *sys_spawn(PyObject *self, PyObject *args) {
    const char *path;
    PyObject *argv_list, *envp_list;
    struct spawn s = {.tty = -1, .err = 0, .step = "clone"};
    uint64_t all = ~(uint64_t)0, old;
    pid_t pid = -1;
    if (!PyArg_ParseTuple(args, "yO!O!i:spawn", &path, &PyList_Type, &argv_list, &PyList_Type,
                          &envp_list, &s.tty))
        return NULL;
    s.path = path;
    if ((s.argv = bytes_array(argv_list)) == NULL)
        return NULL;
    if ((s.envp = bytes_array(envp_list)) == NULL) {
        PyMem_Free(s.argv);
        return NULL;
    }
    void *stack = mmap(NULL, SPAWN_STACK, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) {
        s.err = errno;
        s.step = "mmap";
    } else {
        syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, &old, sizeof all);
        pid = clone(spawn_child, (char *)stack + SPAWN_STACK, CLONE_VM | CLONE_VFORK | SIGCHLD, &s);
        if (pid < 0)
            s.err = errno;
        syscall(SYS_rt_sigprocmask, SIG_SETMASK, &old, NULL, sizeof old);
        munmap(stack, SPAWN_STACK);
        if (pid > 0 && s.err != 0)
            while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
    }
    PyMem_Free(s.argv);
    PyMem_Free(s.envp);
    return Py_BuildValue("(iis)", s.err ? -1 : (int)pid, s.err, s.step);
}

/* setrlimit(2) of the calling process; -1 is RLIM_INFINITY (as in Python's resource). */
static PyObject *sys_setrlimit(PyObject *self, PyObject *args) {
    int res;
    long long soft, hard;
    if (!PyArg_ParseTuple(args, "iLL:setrlimit", &res, &soft, &hard))
        return NULL;
    struct rlimit lim = {(rlim_t)soft, (rlim_t)hard};
    RESULT(setrlimit(res, &lim));
}

/* ioprio_get/ioprio_set(IOPRIO_WHO_PROCESS, 0, ...): this process's I/O priority, as
   ionice sets it (no libc wrapper; the number is the caller's, as for pivot_root). */
static PyObject *sys_ioprio_get(PyObject *self, PyObject *args) {
    long nr;
    if (!PyArg_ParseTuple(args, "l:ioprio_get", &nr))
        return NULL;
    RESULT(syscall(nr, 1 /* IOPRIO_WHO_PROCESS */, 0));
}

static PyObject *sys_ioprio_set(PyObject *self, PyObject *args) {
    long nr;
    int prio;
    if (!PyArg_ParseTuple(args, "li:ioprio_set", &nr, &prio))
        return NULL;
    RESULT(syscall(nr, 1 /* IOPRIO_WHO_PROCESS */, 0, prio));
}

static PyObject *sys_syncfs(PyObject *self, PyObject *args) {
    int fd;
    if (!PyArg_ParseTuple(args, "i:syncfs", &fd))
        return NULL;
    RESULT(syncfs(fd));
}

static PyObject *sys_sethostname(PyObject *self, PyObject *args) {
    const char *name;
    Py_ssize_t len;
    if (!PyArg_ParseTuple(args, "y#:sethostname", &name, &len))
        return NULL;
    RESULT(sethostname(name, (size_t)len));
}

static PyObject *sys_prctl(PyObject *self, PyObject *args) {
    int option;
    unsigned long arg2;
    if (!PyArg_ParseTuple(args, "ik:prctl", &option, &arg2))
        return NULL;
    RESULT(prctl(option, arg2, 0UL, 0UL, 0UL));
}

/* seccomp(SECCOMP_SET_MODE_FILTER, 0, prog): the caller set no_new_privs and checked
   that the program is whole 8-byte instructions. */
static PyObject *sys_seccomp_filter(PyObject *self, PyObject *args) {
    long nr;
    Py_buffer bpf;
    long ret = -1;
    int err = EINVAL;
    if (!PyArg_ParseTuple(args, "ly*:seccomp_filter", &nr, &bpf))
        return NULL;
    size_t count = (size_t)bpf.len / sizeof(struct sock_filter);
    /* sock_fprog.len is 16 bits: a longer program must fail, never load truncated. */
    if (count <= USHRT_MAX) {
        struct sock_fprog prog = {
            .len = (unsigned short)count,
            .filter = (struct sock_filter *)bpf.buf,
        };
        err = 0;
        Py_BEGIN_ALLOW_THREADS;
        ret = syscall(nr, SECCOMP_SET_MODE_FILTER, 0U, &prog);
        if (ret < 0)
            err = errno;
        Py_END_ALLOW_THREADS;
    }
    PyBuffer_Release(&bpf);
    return PyLong_FromLong(ret < 0 ? -err : ret);
}

/* capset(2) of the calling thread, version 3: each mask has bit N for capability N. */
static PyObject *sys_capset(PyObject *self, PyObject *args) {
    unsigned long long eff, perm, inh;
    if (!PyArg_ParseTuple(args, "KKK:capset", &eff, &perm, &inh))
        return NULL;
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    for (int i = 0; i < 2; i++) {
        data[i].effective = (__u32)(eff >> (32 * i));
        data[i].permitted = (__u32)(perm >> (32 * i));
        data[i].inheritable = (__u32)(inh >> (32 * i));
    }
    RESULT(syscall(SYS_capset, &header, data));
}

/* statfs(2)'s f_type (os.statvfs does not report it), as an unsigned 32-bit magic. */
static PyObject *sys_statfs_type(PyObject *self, PyObject *args) {
    const char *path;
    struct statfs st;
    if (!PyArg_ParseTuple(args, "y:statfs_type", &path))
        return NULL;
    RESULT(statfs(path, &st) < 0 ? -1 : (long)((unsigned long)st.f_type & 0xFFFFFFFFUL));
}

static PyMethodDef methods[] = {
    {"unshare", sys_unshare, METH_VARARGS, NULL},
    {"setns", sys_setns, METH_VARARGS, NULL},
    {"mount", sys_mount, METH_VARARGS, NULL},
    {"umount2", sys_umount2, METH_VARARGS, NULL},
    {"pivot_root", sys_pivot_root, METH_VARARGS, NULL},
    {"join_session_keyring", sys_join_session_keyring, METH_VARARGS, NULL},
    {"default_signals", sys_default_signals, METH_NOARGS, NULL},
    {"take_terminal", sys_take_terminal, METH_VARARGS, NULL},
    {"spawn", sys_spawn, METH_VARARGS, NULL},
    {"setrlimit", sys_setrlimit, METH_VARARGS, NULL},
    {"ioprio_get", sys_ioprio_get, METH_VARARGS, NULL},
    {"ioprio_set", sys_ioprio_set, METH_VARARGS, NULL},
    {"syncfs", sys_syncfs, METH_VARARGS, NULL},
    {"sethostname", sys_sethostname, METH_VARARGS, NULL},
    {"prctl", sys_prctl, METH_VARARGS, NULL},
    {"seccomp_filter", sys_seccomp_filter, METH_VARARGS, NULL},
    {"capset", sys_capset, METH_VARARGS, NULL},
    {"statfs_type", sys_statfs_type, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "rootless._syscalls",
    .m_doc = "The C half of rootless.syscalls: one call each, -errno on failure.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__syscalls(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "INTERFACE", INTERFACE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
