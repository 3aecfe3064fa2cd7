/* base_sig.c: the daemons' stop signals (base_sig.h). */
#include "base_sig.h"

#include <pthread.h>

void mc_sig_block_stop(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int mc_sig_wait_stop(const sigset_t *set)
{
    int sig = 0;
    while (sigwait(set, &sig) != 0) {
    }
    return sig;
}
