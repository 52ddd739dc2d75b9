/* rootless._syscalls: the C half of rootless.syscalls (as _signal is signal's).

   Why C: Python 3.11 (Debian 12's, rsbox's floor) has no os.setns/os.unshare (3.12+),
   nor mount, pivot_root, prctl, capset or the seccomp syscall. ctypes reached them, but
   importing ctypes costs ~5 ms of CPU, and every `rsbox exec` and environment shim pays
   it before joining a container: a fifth of the warm shim's 25 ms budget (issue 13).

   Each function makes exactly one call and decides nothing: it returns the call's
   result, or -errno when it failed; rootless.syscalls turns that into OSError(errno,
   strerror, what), in one place. The GIL is released around every call, as ctypes did:
   a mount onto a FUSE path may wait for a server thread of the same process. The numbers
   of the syscalls libc does not wrap (pivot_root, seccomp) come from the caller
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
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>

/* rootless.syscalls refuses a build that speaks another version (a checkout newer than
   the installed rsbox it loads this from): bump it with any change of a signature. */
#define INTERFACE 3

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

/* Signals 32 and 33 (the kernel's first real-time ones, which glibc keeps for itself)
   back to their default action. glibc's sigaction() refuses them, yet an ignore of them
   survives execve: glibc's posix_spawn leaves them ignored in the child, and so would
   every command rsbox starts under a caller made that way. Only the raw call can undo
   it; with no handler and no flags the kernel needs no restorer. */
static PyObject *sys_default_libc_signals(PyObject *self, PyObject *args) {
    struct {
        void (*handler)(int);
        unsigned long flags;
        void (*restorer)(void);
        unsigned long mask;
    } dfl = {SIG_DFL, 0, NULL, 0};
    (void)self;
    (void)args;
    for (int sig = 32; sig <= 33; sig++)
        if (syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof dfl.mask) < 0)
            return PyLong_FromLong(-errno);
    return PyLong_FromLong(0);
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
    {"default_libc_signals", sys_default_libc_signals, METH_NOARGS, NULL},
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
