/* libFuzzer target: the dummy client's decoder of a standalone client's
 * GET /v1/client_config body (store_dummy.c). A decoded configuration has
 * NUL-terminated, non-empty required strings; a failure leaves it zeroed. */
#include <stdint.h>
#include <string.h>

#include "store_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mc__store_dummy_cfg_t c;
    int rc = mc__store_dummy_cfg_parse((const char *)data, size, &c);
    if (rc == 0) {
        if (!c.name[0] || !c.master_server_address[0] || !c.metadata_server[0] || !c.protocol[0])
            __builtin_trap();
        if (strnlen(c.name, sizeof c.name) == sizeof c.name ||
            strnlen(c.metadata_server, sizeof c.metadata_server) == sizeof c.metadata_server ||
            strnlen(c.tenant_id, sizeof c.tenant_id) == sizeof c.tenant_id)
            __builtin_trap();
    } else {
        if (rc != MC_ERR_RPC_FAIL && rc != MC_ERR_INVALID_VERSION) __builtin_trap();
        if (c.name[0] || c.protocol[0]) __builtin_trap();
    }
    return 0;
}
