"""rsbox's union filesystem: image layers + a writable upper, served over FUSE.

Public API (what the launcher uses):

    fs.union.UnionSpec(lowers, upper, mapped_ids)   what to stack (pure data)
    fs.server.mount(spec, mountpoint)               mount; starts no threads
                                                    (kernel_cache=: fs.kcache.Mode)
    await fs.server.serve(task_status=...)          answer requests (trio)
    fs.server.stop()                                make serve return (or cancel it)
    fs.server.close()                               unmount, never raises
    fs.kcache.report()                              for `rsbox info`: the libfuse shim
                                                    that lets the kernel cache listings

`fs.union` is the pure part (no pyfuse3); `fs.server` only adapts it to pyfuse3.
`python -m fs MOUNTPOINT --lower DIR ... --upper DIR` mounts and serves in the foreground.
fs never imports rootless or policies.
"""
