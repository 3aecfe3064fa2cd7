/* libFuzzer target: what the cluster secret's exchange parses from the
 * network (net_auth.h): the HTTP hello value and hex fields (the binary
 * protocols carry fixed-size fields, checked by fuzz_master_proto and
 * fuzz_te_header). Every input must parse or be refused, within its bytes
 * (ASan), and a parsed hello must print back to the same digits. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net_auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s) return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    uint8_t nc[MC_AUTH_NONCE_LEN], mac[MC_AUTH_MAC_LEN];
    if (mc_auth_parse_hello(s, nc) == 0) {
        char hex[2 * MC_AUTH_NONCE_LEN + 1];
        mc_auth_hex(nc, sizeof nc, hex);
        const char *digits = strchr(s, ':') + 1;
        for (size_t i = 0; i < sizeof hex - 1; i++)
            if ((digits[i] | 0x20) != hex[i]) __builtin_trap();
    }
    (void)mc_auth_unhex(s, mac, sizeof mac);
    free(s);
    return 0;
}
