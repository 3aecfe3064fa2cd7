/* net_http_auth.h: the client half of the cluster secret over HTTP (the
 * protocol is described with mc_http_listener_authorize in net_http.h), for
 * libcurl easy handles: the metadata client and the dummy client's
 * configuration fetch.
 * Thread rule: one call per handle at a time; the handle is the caller's. */
#ifndef MC_NET_HTTP_AUTH_H
#define MC_NET_HTTP_AUTH_H
#include <curl/curl.h>

#include "net_tls.h"

/* With the process's TLS files (net_tls.h), sets c to check https servers
 * against the cluster CA and to present this process's certificate; else
 * nothing. mc_http_auth_perform calls it. */
void mc_http_tls_setup(CURL *c);

/* Performs the request set up on c (URL, method, body, write callback),
 * proving the process's cluster key when it has one: adds the hello header to
 * hdrs (the caller's list or NULL; set on c here and freed by the caller
 * after the call, as *hdrs may be replaced), answers a 401 challenge by
 * checking the server's MAC and sending the request again with the proof,
 * and checks that the final answer proves the secret too. reset(arg), if
 * set, drops a partial body before a retry. what names the server in logs.
 * Returns CURLE_OK with *status (the HTTP status), or a curl error. A server
 * that does not prove the secret (an open one, or another secret) gives
 * CURLE_OK with *status 0 after one line naming it; a server that wants a
 * secret this process lacks gives its 401 after one line saying so. */
CURLcode mc_http_auth_perform(CURL *c, struct curl_slist **hdrs, const char *service,
                              const char *what, void (*reset)(void *), void *arg, long *status);
#endif
