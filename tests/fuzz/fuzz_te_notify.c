/* libFuzzer target: the NOTIFY payload decoder of the handshake protocol. */
#include <stdint.h>
#include <stdlib.h>

#include "te_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *name, *msg;
    if (mc__te_notify_decode((const char *)data, size, &name, &msg) == 0) {
        free(name);
        free(msg);
    }
    return 0;
}
