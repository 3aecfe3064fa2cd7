/* Blocking TCP socket helpers shared by the transfer engine, the metadata
 * clients and the daemons. All functions are thread-safe (they touch only the
 * fds passed in) and return 0 or a negative errno. */
#ifndef MC_NET_SOCK_H
#define MC_NET_SOCK_H
#include <stddef.h>
#include <stdint.h>

/* Listens on host:port (host NULL/"" = all addresses, port 0 = kernel picks).
 * On success *fd is the listening socket and *bound the port it got. */
int mc_sock_listen(const char *host, uint16_t port, int backlog, int *fd, uint16_t *bound);
/* Listens on a random free port in [lo, hi], trying up to `tries` ports. */
int mc_sock_listen_range(const char *host, uint16_t lo, uint16_t hi, int tries, int *fd,
                         uint16_t *bound);
/* Connects to host:port (name or numeric) within timeout_ms; the returned fd is blocking. */
int mc_sock_connect(const char *host, uint16_t port, int timeout_ms, int *fd);
/* Sends/receives exactly len bytes; a peer close reads as -ECONNRESET,
 * an expired SO_RCVTIMEO/SO_SNDTIMEO as -ETIMEDOUT. */
int mc_sock_send_all(int fd, const void *buf, size_t len);
int mc_sock_recv_all(int fd, void *buf, size_t len);
/* TCP_NODELAY and large socket buffers for data connections. */
void mc_sock_tune(int fd);
/* Receive and send timeouts; 0 disables. */
void mc_sock_set_timeout(int fd, int ms);
/* "ip:port" of the peer, for logs; never fails (writes "?" on error). */
void mc_sock_peer_str(int fd, char *buf, size_t len);
struct sockaddr;
/* "ip:port" of an IPv4/IPv6 address (sa may be NULL), for logs; writes "?" when
 * it cannot be formatted. */
void mc_sock_addr_str(const struct sockaddr *sa, char *buf, size_t len);
/* The address this host advertises: $MC_TCP_BIND_ADDRESS, else the first
 * non-loopback IPv4 address, else 127.0.0.1. */
void mc_net_local_ip(char *buf, size_t len);
/* Splits "host:port" (also "[v6]:port"); returns -EINVAL when malformed. */
int mc_net_split_hostport(const char *s, char *host, size_t hlen, uint16_t *port);
#endif
