/* The stop signals of the daemons (SIGINT, SIGTERM), waited for on the main
 * thread. Call mc_sig_block_stop before any thread starts. */
#ifndef MC_BASE_SIG_H
#define MC_BASE_SIG_H
#include <signal.h>

/* Blocks SIGINT and SIGTERM in the calling thread, so that threads started
 * later inherit the mask and only mc_sig_wait_stop sees them; ignores SIGPIPE.
 * *set receives the stop set. */
void mc_sig_block_stop(sigset_t *set);
/* Waits for a signal of set (from mc_sig_block_stop) and returns its number. */
int mc_sig_wait_stop(const sigset_t *set);
#endif
