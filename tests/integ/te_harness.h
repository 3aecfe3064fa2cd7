/* te_harness.h: process helpers for the transfer engine's multi-process tests.
 * Children are spawned with pipes on stdin/stdout (stderr is inherited, so their
 * logs land in the ctest output), readiness is a line read with poll() and a
 * timeout, and every child is killed and reaped by pid — never by name. Also the
 * deterministic byte pattern shared by the test and te_test_peer.
 *
 * Thread rule: the process functions are for the test's main thread only; the
 * pattern functions are pure and may run anywhere.
 * Errors: functions return 0 or a negative errno (-ETIMEDOUT when a deadline
 * passed, -EPIPE when the child closed its stdout). */
#ifndef MC_TE_HARNESS_H
#define MC_TE_HARNESS_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct {
    pid_t pid;      /* 0 once reaped */
    int in;         /* write end of the child's stdin, -1 when not piped or closed */
    int out;        /* read end of the child's stdout */
    char buf[8192]; /* bytes read from stdout and not yet returned as lines */
    size_t len;
    int status; /* wait status once reaped */
} th_proc_t;

/* A running te_test_peer and what its READY line said. */
typedef struct {
    th_proc_t proc;
    char segment[256];
    uint64_t addr; /* its main registered buffer */
    uint64_t size;
} th_peer_t;

/* Fills buf[0, len) with the pattern of seed; byte i depends only on (seed, i),
 * so any sub-range can be regenerated on its own. */
void th_pattern(void *buf, size_t len, uint64_t seed);
/* The pattern of seed starting at byte offset `from` of the stream. */
void th_pattern_at(void *buf, size_t len, uint64_t seed, uint64_t from);

/* Starts path with argv (argv[0] included, NULL-terminated); stdin and stdout
 * piped, stderr inherited, all other fds closed; the child gets SIGKILL when
 * the test process dies. */
int th_spawn(th_proc_t *p, const char *path, char *const argv[]);
/* Reads one line (without '\n') within timeout_ms. */
int th_read_line(th_proc_t *p, char *line, size_t cap, int timeout_ms);
/* Sends one command line (printf format, '\n' added) and reads the one-line reply. */
int th_cmd(th_proc_t *p, char *reply, size_t cap, int timeout_ms, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* 1 while the child runs (waitpid WNOHANG), 0 once it exited (and is reaped). */
int th_alive(th_proc_t *p);
/* Closes stdin and waits up to timeout_ms for the child to exit; SIGKILLs it
 * after that. Always reaps. Returns the wait status, or -ETIMEDOUT when it had
 * to be killed. A reaped child is a no-op returning its status. */
int th_finish(th_proc_t *p, int timeout_ms);
/* Sends sig; for SIGKILL also reaps (bounded by the kernel, not a timer). */
int th_signal(th_proc_t *p, int sig);
/* Kills and reaps every child still alive (for teardown after a failure). */
void th_reap_all(void);

/* The protocol the tests' network engines use: $MC_TEST_PROTOCOL ("rdma" in
 * the *_rdma ctest variants, with FI_PROVIDER=tcp), else "tcp". */
const char *th_protocol(void);
/* What mc_te_segment_transport names for a peer reached that way: "rdma" or "tcp". */
const char *th_net_transport(void);

/* "$MC_BIN_DIR/<name>" into buf; -ENOENT when MC_BIN_DIR is unset. */
int th_bin_path(char *buf, size_t cap, const char *name);
/* Starts mooncake_http_metadata_server on 127.0.0.1 with a kernel-chosen port
 * and parses its "listening on HOST:PORT" line. */
int th_metasrv_start(th_proc_t *p, uint16_t *port, int timeout_ms);
/* Starts te_test_peer (--log FILE when log is not NULL) without waiting. */
int th_peer_spawn(th_peer_t *peer, const char *name, const char *metadata, uint64_t size,
                  const char *log);
/* Waits for a spawned peer's READY line and parses it; on any other outcome
 * (EOF: the peer exited, -EPIPE) the peer is killed and reaped. */
int th_peer_ready(th_peer_t *peer, int timeout_ms);
/* Starts te_test_peer and waits for READY. */
int th_peer_start(th_peer_t *peer, const char *name, const char *metadata, uint64_t size,
                  int timeout_ms);
#endif
