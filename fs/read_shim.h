/* What fs/cache_shim.c calls in fs/read_shim.c (see there). */
#ifndef RSBOX_READ_SHIM_H
#define RSBOX_READ_SHIM_H
struct fuse_lowlevel_ops;
struct fuse_conn_info;

/* In wrap(), on cache_shim.c's copy of the ops table: swap in the READ/RELEASE wrappers
 * when `flags` has READ_SHIM_ON (else leave the table alone and keep the table of fhs
 * off); READ_SHIM_NO_SPLICE: copy through a buffer even where splice is offered. */
#define READ_SHIM_ON 1
#define READ_SHIM_NO_SPLICE 2
void rsbox_read_shim_wrap(struct fuse_lowlevel_ops *ops, int flags);
/* In INIT, after pyfuse3's handler: what the READ path wants of the kernel. */
void rsbox_read_shim_init(struct fuse_conn_info *conn);
#endif
