/*
 * rsbox's READ path in C: answer the kernel's READ requests for files the union opened,
 * without entering Python.
 *
 * Why C: a cold read of 1 GiB is 4096 READs of 256 KiB here. Through pyfuse3 each is a
 * Cython->Python call, a trio task step, our handler, a pread into a new bytes object and
 * a copy into libfuse's reply: 0.86-1.76 s against fuse-overlayfs's 0.36 s (2.7x, load
 * ~2). Here a READ is a table lookup and fuse_reply_data() from the host file's fd:
 * libfuse splices the page-cache pages into /dev/fuse when the kernel grants
 * FUSE_CAP_SPLICE_WRITE (asked for in INIT below), one copy fewer. Server CPU for that
 * read (4 rounds, load ~5): spliced 0.37-0.44 s, Python 0.56-0.67 s, in C through a
 * buffer 0.58-0.64 s (the copies, not Python's per-request cost, dominate a big READ);
 * libfuse's own non-splice fallback mallocs, and so faults in, a fresh buffer per READ:
 * 0.95-1.15 s, so without splice we pread into one buffer of ours (read_copy).
 * RELEASE (below) is where Python's per-request cost counts. Figures: README "Filesystem".
 *
 * The table: fs.server registers (fh -> host fd) when it answers OPEN or CREATE
 * (rsbox_fs_read_register, through ctypes); the wrapped RELEASE drops the entry before
 * pyfuse3's handler (which closes the fd) even runs, so no READ can reach a closed, or
 * reused, fd number. An fh not in the table (registration off, or a handle opened before
 * the table was) goes to pyfuse3's handler as before.
 *
 * Threads: none of our own, and no lock. pyfuse3 runs its session loops as trio tasks on
 * one thread and libfuse calls every handler from fuse_session_process_buf() on that
 * thread; fs.server calls register from a handler on the same thread. (A libfuse
 * multi-threaded loop would need a lock here and a reference per READ in flight: pyfuse3
 * has none.)
 *
 * Writes and copy-up: writes still go through Python (pwrite on the same fd), so a READ
 * sees them as Python's did. A copy-up while a file is open moves the handle onto the
 * upper copy by dup2() over the same fd number (fs.union._reopen): the READs answered
 * here follow it, exactly as before (rsbox's choice, unlike overlayfs, whose old fds keep
 * reading the lower file: every reader of a union file sees its writes).
 *
 * Errors: fuse_reply_data() answers a failed pread (EIO, ...) with that errno itself.
 *
 * RELEASE of a read-only handle is answered here too (fs.server says which handles may
 * be, at registration): a `tar c` opens, reads and releases every file, and RELEASE was a
 * third of the requests that still entered Python. The entry leaves the table, the reply
 * goes out at once, and the fh is queued; fs.server takes the queue
 * (rsbox_fs_read_released) before its next OPEN, CREATE, RELEASE, UNLINK or RENAME and
 * at the end, and only then runs its own release: the fd stays open until then, so its
 * number cannot be reused meanwhile. What is deferred is bookkeeping only (the kernel
 * never waits for a RELEASE: it sends it after close(2) has returned). The queue is
 * bounded: when full, RELEASE goes to pyfuse3, whose handler takes the queue first.
 */
#define _GNU_SOURCE
#define FUSE_USE_VERSION 32 /* pyfuse3's: the same ops table layout */
#include <errno.h>
#include <fuse_lowlevel.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "read_shim.h"

/* An open-addressing table fh -> fd (linear probing, tombstones; pyfuse3's fhs are
 * fs.union's counter, never 0). Grows at half full. */
struct slot {
	uint64_t fh; /* 0: empty; TOMB: deleted */
	int fd;
	int release_here; /* RELEASE answered in C, the fh queued for fs.server */
};
#define TOMB UINT64_MAX

static struct slot *slots;
static size_t cap, used; /* used counts live entries and tombstones */
static unsigned long long served, passed; /* READs answered here / given to pyfuse3 */
static int enabled;
static int spliced; /* the kernel granted FUSE_CAP_SPLICE_WRITE */
static int copy_only; /* READ_SHIM_NO_SPLICE: not asked for (RSBOX_FS_C_READ=copy) */
static char *buf;  /* read_copy's */
static size_t bufsize;
#define RELEASED_MAX 1024
static uint64_t released[RELEASED_MAX];
static int nreleased;
static void (*real_read)(fuse_req_t, fuse_ino_t, size_t, off_t, struct fuse_file_info *);
static void (*real_release)(fuse_req_t, fuse_ino_t, struct fuse_file_info *);

static size_t hash(uint64_t fh)
{
	return (size_t)(fh * 0x9E3779B97F4A7C15ull);
}

static struct slot *find(uint64_t fh)
{
	if (cap == 0)
		return NULL;
	for (size_t i = hash(fh) & (cap - 1);; i = (i + 1) & (cap - 1)) {
		if (slots[i].fh == fh)
			return &slots[i];
		if (slots[i].fh == 0)
			return NULL;
	}
}

static int grow(void)
{
	size_t ncap = cap ? cap : 64;
	size_t live = 0;
	for (size_t i = 0; i < cap; i++)
		live += slots[i].fh != 0 && slots[i].fh != TOMB;
	while (ncap < 4 * (live + 1))
		ncap *= 2;
	struct slot *n = calloc(ncap, sizeof(*n));
	if (n == NULL)
		return -1;
	for (size_t i = 0; i < cap; i++) {
		if (slots[i].fh == 0 || slots[i].fh == TOMB)
			continue;
		size_t j = hash(slots[i].fh) & (ncap - 1);
		while (n[j].fh != 0)
			j = (j + 1) & (ncap - 1);
		n[j] = slots[i];
	}
	free(slots);
	slots = n;
	cap = ncap;
	used = live;
	return 0;
}

static void forget_fh(uint64_t fh)
{
	struct slot *s = find(fh);
	if (s != NULL)
		s->fh = TOMB;
}

int rsbox_fs_read_register(uint64_t fh, int fd, int release_here)
{
	if (!enabled || fh == 0 || fh == TOMB || fd < 0)
		return 0;
	struct slot *s = find(fh);
	if (s != NULL) {
		s->fd = fd;
		s->release_here = release_here;
		return 1;
	}
	if (2 * (used + 1) > cap && grow() != 0)
		return 0; /* out of memory: pyfuse3 serves this one */
	size_t i = hash(fh) & (cap - 1);
	while (slots[i].fh != 0 && slots[i].fh != TOMB)
		i = (i + 1) & (cap - 1);
	if (slots[i].fh == 0)
		used++;
	slots[i].fh = fh;
	slots[i].fd = fd;
	slots[i].release_here = release_here;
	return 1;
}

/* Without splice (the kernel did not grant it, or RSBOX_FS_C_READ=copy): pread into one
 * buffer kept for the session (see "Why C" above for libfuse's own fallback). */
static void read_copy(fuse_req_t req, int fd, size_t size, off_t off)
{
	if (size > bufsize) { /* page-aligned, for a host fd opened O_DIRECT */
		size_t want = (size + 4095) & ~(size_t)4095;
		free(buf);
		buf = aligned_alloc(4096, want);
		bufsize = buf != NULL ? want : 0;
		if (buf == NULL) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
	}
	ssize_t got;
	do
		got = pread(fd, buf, size, off);
	while (got < 0 && errno == EINTR);
	if (got < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_buf(req, buf, (size_t)got);
}

static void read_in_c(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                      struct fuse_file_info *fi)
{
	struct slot *s = find(fi->fh);
	if (s == NULL) {
		passed++;
		real_read(req, ino, size, off, fi);
		return;
	}
	served++;
	if (!spliced) {
		read_copy(req, s->fd, size, off);
		return;
	}
	struct fuse_bufvec data = FUSE_BUFVEC_INIT(size);
	data.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	data.buf[0].fd = s->fd;
	data.buf[0].pos = off;
	/* Replies itself, with the data or with pread's errno; a failure to send (the
	 * request was interrupted, the connection gone) leaves nothing to answer. */
	fuse_reply_data(req, &data, FUSE_BUF_SPLICE_MOVE);
}

static void release_in_c(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct slot *s = find(fi->fh);
	if (s != NULL && s->release_here && nreleased < RELEASED_MAX) {
		released[nreleased++] = fi->fh;
		s->fh = TOMB;
		fuse_reply_err(req, 0);
		return;
	}
	forget_fh(fi->fh); /* before pyfuse3's handler closes the fd */
	real_release(req, ino, fi);
}

/* Moves up to `max` queued fhs (RELEASE answered here) to `out`; returns how many. */
int rsbox_fs_read_released(uint64_t *out, int max)
{
	int n = nreleased < max ? nreleased : max;
	memcpy(out, released + (nreleased - n), n * sizeof(*out));
	nreleased -= n;
	return n;
}

void rsbox_read_shim_wrap(struct fuse_lowlevel_ops *ops, int flags)
{
	int on = flags & READ_SHIM_ON;
	free(slots);
	slots = NULL;
	cap = used = 0;
	served = passed = 0;
	nreleased = 0;
	spliced = 0;
	copy_only = flags & READ_SHIM_NO_SPLICE;
	enabled = on && ops != NULL && ops->read != NULL && ops->release != NULL;
	if (!enabled)
		return;
	real_read = ops->read;
	real_release = ops->release;
	ops->read = read_in_c;
	ops->release = release_in_c;
}

void rsbox_read_shim_init(struct fuse_conn_info *conn)
{
	/* Splice the host file's pages into the reply (no copy through our memory). */
	spliced = enabled && !copy_only && (conn->capable & FUSE_CAP_SPLICE_WRITE);
	if (spliced)
		conn->want |= FUSE_CAP_SPLICE_WRITE;
}

/* Whether READ replies are spliced (known once INIT was answered). */
int rsbox_fs_read_spliced(void)
{
	return spliced;
}

/* READs answered in C (which = 0) or handed to pyfuse3 (1) since the session began. */
unsigned long long rsbox_fs_read_count(int which)
{
	return which ? passed : served;
}
