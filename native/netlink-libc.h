/*
 * The native side of flowdrake's netlink bindings: the libc functions that
 * src/offload/netlink/socket.ts loads through koffi. Each prototype line below
 * is handed to koffi verbatim (koffi parses C prototypes), so this file IS the
 * binding declaration: add a function here, then call it from socket.ts.
 *
 * Buffers are passed as `void *` (koffi hands Node Buffers over by address,
 * no copy); socklen_t and nfds_t are spelled as their Linux x86-64/arm64 sizes.
 */
int socket(int domain, int type, int protocol);
int bind(int fd, const void *addr, uint32_t addrlen);
int getsockname(int fd, void *addr, void *addrlen);
int setsockopt(int fd, int level, int optname, const void *optval, uint32_t optlen);
intptr_t sendto(int fd, const void *buf, size_t len, int flags, const void *dest, uint32_t addrlen);
intptr_t recv(int fd, void *buf, size_t len, int flags);
int poll(void *fds, unsigned long nfds, int timeout);
int close(int fd);
int open(const char *path, int flags, int mode);
int setns(int fd, int nstype);
