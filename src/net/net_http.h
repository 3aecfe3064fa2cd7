/* Helpers shared by the libmicrohttpd servers (metadata server, master admin,
 * the store's dummy-client endpoint, proxy). Call them from an MHD request
 * callback, on the thread MHD runs it on. */
#ifndef MC_NET_HTTP_H
#define MC_NET_HTTP_H
#include <stddef.h>

#include <microhttpd.h>

/* Writes the connection's peer as "ip:port" into buf (never fails). */
void mc_http_peer(struct MHD_Connection *conn, char *buf, size_t len);

/* Queues a response: len bytes of body with Content-Type ctype and status.
 * mode is MHD's: MHD_RESPMEM_PERSISTENT (body outlives the response),
 * MHD_RESPMEM_MUST_COPY, or MHD_RESPMEM_MUST_FREE (malloc'd; freed here also
 * when the response cannot be made). allow: value of an Allow header (405) or
 * NULL. A 413 also carries Connection: close, so a client that sent an
 * oversized body is not kept. Returns MHD's result. */
enum MHD_Result mc_http_send(struct MHD_Connection *conn, unsigned status, const char *ctype,
                             const char *body, size_t len, enum MHD_ResponseMemoryMode mode,
                             const char *allow);

#endif
