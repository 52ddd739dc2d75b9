/*
 * rsbox's libfuse shim: let the kernel cache directory listings and symlink targets
 * for a pyfuse3 filesystem.
 *
 * What the kernel offers, and why pyfuse3 3.5 cannot ask for it:
 *
 * - A FUSE server that answers OPENDIR with FOPEN_CACHE_DIR gets the kernel's readdir
 *   cache: the first full listing of a directory is kept in the directory inode's page
 *   cache and later getdents() calls are served from it, with no READDIRPLUS. Without
 *   FOPEN_KEEP_CACHE in the same reply the kernel drops those pages on every open, so
 *   the cache only pays with both. The kernel resets the cache by itself whenever the
 *   directory changes through the mount (fs/fuse/dir.c: create, mknod, mkdir, symlink,
 *   link, unlink, rmdir and rename call fuse_dir_changed(), which bumps the inode's
 *   i_version; fs/fuse/readdir.c compares it, and the mtime, at offset 0).
 * - With FUSE_CACHE_SYMLINKS granted in INIT, readlink results are kept in the page
 *   cache too (a symlink's target never changes: a new target is a new inode).
 * - Neither needs any privilege. pyfuse3 replies to OPENDIR with a copy of the
 *   fuse_file_info that libfuse handed its handler (handlers.pxi: `c.fi = fi[0]` ...
 *   `fuse_reply_open(c.req, &c.fi)`), but never sets the two bits, and its INIT handler
 *   does not ask for FUSE_CAP_CACHE_SYMLINKS.
 *
 * So this library, loaded RTLD_GLOBAL before pyfuse3 (fs/kcache.py), defines
 * fuse_session_new: the dynamic linker binds pyfuse3's call to it instead of libfuse's.
 * It copies pyfuse3's ops table, swaps in small wrappers and calls the real
 * function, found with dlvsym (libfuse versions its symbols):
 *
 *   opendir  sets keep_cache and cache_readdir, then runs pyfuse3's handler, which may
 *            still answer with an error (then the bits are ignored);
 *   init     runs pyfuse3's handler, then adds FUSE_CAP_CACHE_SYMLINKS to `want` when
 *            the kernel offers it.
 *
 * "No-opendir" (CONF_NO_OPENDIR, the default): the kernel answers opendir(2) without asking the
 * server once the server has answered an OPENDIR with ENOSYS, and then treats every
 * directory as if OPENDIR had said FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR (fs/fuse/file.c,
 * fuse_file_open: "Default for no-open"); no RELEASEDIR follows either. A warm walk then
 * costs nothing but the GETATTRs the kernel sends after an uncached readdir (it marks
 * atime stale). In that mode the opendir wrapper answers ENOSYS itself, and a readdirplus
 * wrapper puts the directory's inode number where pyfuse3 reads the handle (fi->fh,
 * which the kernel then leaves 0): fs.union.Union.readdir_ino works from that.
 *
 * libfuse >= 3.17 turned fuse_session_new into an inline wrapper of
 * fuse_session_new_versioned (new symbol, FUSE_3.17); a pyfuse3 built against it calls
 * that, so both are defined here. There `want` is still read after init returns (it is
 * folded into want_ext then), so the same init wrapper works.
 *
 * READ (and RELEASE, to keep its table right) is answered in C by fs/read_shim.c when
 * fs/kcache.py says CONF_C_READ: see there.
 *
 * Only what fs/kcache.py asks for is done: rsbox_fs_shim_configure() before the session
 * is created says whether to wrap at all (0: pass everything through untouched, the knob
 * for debugging) and whether to go no-opendir; rsbox_fs_shim_status() says what
 * happened, for `rsbox info`, fs.server and tests.
 * One session at a time, like pyfuse3 itself; each new one is wrapped afresh.
 */
#define _GNU_SOURCE
#define FUSE_USE_VERSION 32 /* pyfuse3's: the same ops table layout */
#include <dlfcn.h>
#include <errno.h>
#include <fuse_lowlevel.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "read_shim.h"

#ifdef fuse_session_new /* libfuse >= 3.17: a macro over fuse_session_new_versioned */
#undef fuse_session_new
#endif

/* What rsbox_fs_shim_status() reports, one bit each. */
#define SHIM_WRAPPED 1u       /* a session was created through us, handlers wrapped */
#define SHIM_INIT 2u          /* INIT went through the wrapper */
#define SHIM_SYMLINKS 4u      /* ... and the kernel granted FUSE_CAP_CACHE_SYMLINKS */
#define SHIM_OPENDIR 8u       /* an OPENDIR went through the wrapper */
#define SHIM_NO_OPENDIR 16u   /* ... in no-opendir mode (then answered ENOSYS) */
#define SHIM_FH_IS_INO 32u    /* no-opendir: readdirplus hands pyfuse3 the inode as fh */
#define SHIM_C_READ 64u       /* READ answered in C (fs/read_shim.c) */

/* rsbox_fs_shim_configure() flags */
#define CONF_ENABLE 1
#define CONF_NO_OPENDIR 2
#define CONF_C_READ 4 /* fs/read_shim.c */
#define CONF_C_READ_COPY 8 /* ... without splice */

struct libfuse_version; /* only passed through (3.17+) */

typedef struct fuse_session *(*session_new_fn)(struct fuse_args *, const struct fuse_lowlevel_ops *,
                                               size_t, void *);
typedef struct fuse_session *(*session_new_versioned_fn)(struct fuse_args *,
                                                         const struct fuse_lowlevel_ops *, size_t,
                                                         const struct libfuse_version *, void *);

static int config = CONF_ENABLE;
static int no_opendir;
static unsigned status;
static struct fuse_lowlevel_ops ops; /* the copy handed to libfuse, which copies it again */
static void (*real_init)(void *, struct fuse_conn_info *);
static void (*real_opendir)(fuse_req_t, fuse_ino_t, struct fuse_file_info *);
static void (*real_readdirplus)(fuse_req_t, fuse_ino_t, size_t, off_t, struct fuse_file_info *);

static void shim_init(void *userdata, struct fuse_conn_info *conn)
{
	if (real_init != NULL)
		real_init(userdata, conn);
	status |= SHIM_INIT;
	rsbox_read_shim_init(conn);
	if (conn->capable & FUSE_CAP_CACHE_SYMLINKS) {
		conn->want |= FUSE_CAP_CACHE_SYMLINKS;
		status |= SHIM_SYMLINKS;
	}
}

static void shim_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	status |= SHIM_OPENDIR;
	if (no_opendir) {
		status |= SHIM_NO_OPENDIR;
		fuse_reply_err(req, ENOSYS);
		return;
	}
	fi->keep_cache = 1;
	fi->cache_readdir = 1;
	real_opendir(req, ino, fi);
}

static void shim_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                             struct fuse_file_info *fi)
{
	fi->fh = ino;
	real_readdirplus(req, ino, size, off, fi);
}

/* The ops table to give libfuse: pyfuse3's, with the wrappers when we may. The state
 * (status, no_opendir) describes the latest session: pyfuse3 has one at a time. */
static const struct fuse_lowlevel_ops *wrap(const struct fuse_lowlevel_ops *op, size_t op_size)
{
	size_t need = offsetof(struct fuse_lowlevel_ops, readdirplus) + sizeof(op->readdirplus);
	status = 0;
	no_opendir = 0;
	rsbox_read_shim_wrap(NULL, 0); /* the READ path, off until the wrap below */
	if (!(config & CONF_ENABLE) || op == NULL || op_size < need || op_size > sizeof(ops) ||
	    op->opendir == NULL)
		return op;
	memcpy(&ops, op, op_size);
	real_init = op->init;
	real_opendir = op->opendir;
	ops.init = shim_init;
	ops.opendir = shim_opendir;
	if ((config & CONF_NO_OPENDIR) && op->readdirplus != NULL && op->readdir == NULL) {
		no_opendir = 1; /* pyfuse3 has readdirplus only: every listing passes here */
		real_readdirplus = op->readdirplus;
		ops.readdirplus = shim_readdirplus;
		status |= SHIM_FH_IS_INO;
	}
	rsbox_read_shim_wrap(&ops, (config & CONF_C_READ ? READ_SHIM_ON : 0) |
	                           (config & CONF_C_READ_COPY ? READ_SHIM_NO_SPLICE : 0));
	if (ops.read != op->read)
		status |= SHIM_C_READ;
	status |= SHIM_WRAPPED;
	return &ops;
}

static void *real(const char *name, const char *version)
{
	void *fn = dlvsym(RTLD_NEXT, name, version);
	if (fn == NULL)
		fn = dlsym(RTLD_NEXT, name); /* a libfuse built without symbol versions */
	if (fn == NULL)
		fprintf(stderr, "rsbox fs shim: %s not found in libfuse: %s\n", name, dlerror());
	return fn;
}

struct fuse_session *fuse_session_new(struct fuse_args *args, const struct fuse_lowlevel_ops *op,
                                      size_t op_size, void *userdata)
{
	session_new_fn fn = (session_new_fn)real("fuse_session_new", "FUSE_3.0");
	if (fn == NULL)
		return NULL;
	return fn(args, wrap(op, op_size), op_size, userdata);
}

struct fuse_session *fuse_session_new_versioned(struct fuse_args *args,
                                                const struct fuse_lowlevel_ops *op,
                                                size_t op_size,
                                                const struct libfuse_version *version,
                                                void *userdata)
{
	session_new_versioned_fn fn =
		(session_new_versioned_fn)real("fuse_session_new_versioned", "FUSE_3.17");
	if (fn == NULL)
		return NULL;
	return fn(args, wrap(op, op_size), op_size, version, userdata);
}

/* The interface of fs/kcache.py (ctypes). Bump the version when it changes. */
int rsbox_fs_shim_version(void)
{
	return 3;
}

void rsbox_fs_shim_configure(int flags)
{
	config = flags;
}

unsigned rsbox_fs_shim_status(void)
{
	return status;
}
