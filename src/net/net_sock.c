/* net_sock.c: the few socket operations every component needs, written once,
 * with EINTR handling, timeouts and readable errors. */
#include "net_sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int resolve(const char *host, uint16_t port, int passive, struct addrinfo **out)
{
    struct addrinfo hints = {0};
    char ps[8];
    snprintf(ps, sizeof ps, "%u", port);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    int rc = getaddrinfo(host && *host ? host : NULL, ps, &hints, out);
    return rc == 0 ? 0 : -EHOSTUNREACH;
}

int mc_sock_listen(const char *host, uint16_t port, int backlog, int *fd, uint16_t *bound)
{
    struct addrinfo *ai;
    int rc = resolve(host && *host ? host : "0.0.0.0", port, 1, &ai);
    if (rc) return rc;
    rc = -EADDRNOTAVAIL;
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        int s = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, 0);
        if (s < 0) continue;
        int one = 1;
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(s, a->ai_addr, a->ai_addrlen) == 0 && listen(s, backlog) == 0) {
            struct sockaddr_storage ss;
            socklen_t sl = sizeof ss;
            getsockname(s, (struct sockaddr *)&ss, &sl);
            *bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                    : ((struct sockaddr_in *)&ss)->sin_port);
            *fd = s;
            rc = 0;
            break;
        }
        rc = -errno;
        close(s);
    }
    freeaddrinfo(ai);
    return rc;
}

int mc_sock_listen_range(const char *host, uint16_t lo, uint16_t hi, int tries, int *fd,
                         uint16_t *bound)
{
    if (lo == 0 || hi < lo) return mc_sock_listen(host, 0, 128, fd, bound);
    unsigned seed = (unsigned)(time(NULL) ^ getpid() ^ (uintptr_t)fd);
    int rc = -EADDRINUSE;
    for (int i = 0; i < tries; i++) {
        uint16_t p = (uint16_t)(lo + rand_r(&seed) % (unsigned)(hi - lo + 1));
        rc = mc_sock_listen(host, p, 128, fd, bound);
        if (rc == 0) return 0;
    }
    return rc;
}

int mc_sock_connect(const char *host, uint16_t port, int timeout_ms, int *fd)
{
    struct addrinfo *ai;
    int rc = resolve(host, port, 0, &ai);
    if (rc) return rc;
    rc = -ECONNREFUSED;
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        int s = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (s < 0) continue;
        int r = connect(s, a->ai_addr, a->ai_addrlen);
        if (r < 0 && errno == EINPROGRESS) {
            struct pollfd pfd = {.fd = s, .events = POLLOUT};
            r = poll(&pfd, 1, timeout_ms);
            if (r == 0) {
                rc = -ETIMEDOUT;
                close(s);
                continue;
            }
            int err = 0;
            socklen_t el = sizeof err;
            getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &el);
            r = err ? -1 : 0;
            errno = err;
        }
        if (r == 0) {
            fcntl(s, F_SETFL, fcntl(s, F_GETFL) & ~O_NONBLOCK);
            *fd = s;
            rc = 0;
            break;
        }
        rc = -errno;
        close(s);
    }
    freeaddrinfo(ai);
    return rc;
}

int mc_sock_send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            return (errno == EAGAIN || errno == EWOULDBLOCK) ? -ETIMEDOUT : -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int mc_sock_recv_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len) {
        ssize_t n = recv(fd, p, len, MSG_WAITALL);
        if (n == 0) return -ECONNRESET;
        if (n < 0) {
            if (errno == EINTR) continue;
            return (errno == EAGAIN || errno == EWOULDBLOCK) ? -ETIMEDOUT : -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

void mc_sock_tune(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* 4 MiB buffers measured best for multi-MiB requests on loopback;
     * MC_TCP_SOCKBUF sets another size, 0 leaves it to kernel autotuning. */
    const char *env = getenv("MC_TCP_SOCKBUF");
    int sz = env && *env ? atoi(env) : 4 << 20;
    if (sz > 0) {
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    }
}

void mc_sock_set_timeout(int fd, int ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

void mc_sock_addr_str(const struct sockaddr *sa, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN], serv[8];
    snprintf(buf, len, "?");
    if (!sa || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)) return;
    socklen_t sl =
        sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (getnameinfo(sa, sl, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV) == 0)
        snprintf(buf, len, "%s:%s", host, serv);
}

void mc_sock_peer_str(int fd, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int ok = getpeername(fd, (struct sockaddr *)&ss, &sl) == 0;
    mc_sock_addr_str(ok ? (struct sockaddr *)&ss : NULL, buf, len);
}

void mc_net_local_ip(char *buf, size_t len)
{
    const char *env = getenv("MC_TCP_BIND_ADDRESS");
    if (env && *env) {
        snprintf(buf, len, "%s", env);
        return;
    }
    snprintf(buf, len, "127.0.0.1");
    struct ifaddrs *ifs;
    if (getifaddrs(&ifs) != 0) return;
    for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
        struct in_addr a = ((struct sockaddr_in *)i->ifa_addr)->sin_addr;
        if ((ntohl(a.s_addr) >> 24) == 127) continue;
        inet_ntop(AF_INET, &a, buf, (socklen_t)len);
        break;
    }
    freeifaddrs(ifs);
}

int mc_net_split_hostport(const char *s, char *host, size_t hlen, uint16_t *port)
{
    const char *colon;
    const char *hb = s, *he;
    if (*s == '[') {
        he = strchr(s, ']');
        if (!he || he[1] != ':') return -EINVAL;
        hb = s + 1;
        colon = he + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon) return -EINVAL;
        he = colon;
    }
    size_t n = (size_t)(he - hb);
    if (n == 0 || n >= hlen) return -EINVAL;
    char *end;
    errno = 0;
    unsigned long p = strtoul(colon + 1, &end, 10);
    if (errno || *end || colon[1] == '\0' || p == 0 || p > 65535) return -EINVAL;
    memcpy(host, hb, n);
    host[n] = '\0';
    *port = (uint16_t)p;
    return 0;
}
