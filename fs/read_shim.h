/* What fs/cache_shim.c calls in fs/read_shim.c (see there). */
#ifndef RSBOX_READ_SHIM_H
#define RSBOX_READ_SHIM_H
struct fuse_lowlevel_ops;
struct fuse_conn_info;

/* In wrap(), on cache_shim.c's copy of the ops table: swap in the READ/RELEASE wrappers
 * when `on` (else leave the table alone and keep the table of fhs off). */
void rsbox_read_shim_wrap(struct fuse_lowlevel_ops *ops, int on);
/* In INIT, after pyfuse3's handler: what the READ path wants of the kernel. */
void rsbox_read_shim_init(struct fuse_conn_info *conn);
#endif
