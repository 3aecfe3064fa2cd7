/* base_err.c: names and texts of the store/master error codes, generated from
 * the one list in mooncake/err.h. */
#include "mooncake/err.h"

#include <string.h>

const char *mc_err_name(int code)
{
    const char *n;
    switch (code) {
#define MC__ERR_NAME(name, value, text)                                                            \
    case value:                                                                                    \
        n = #name;                                                                                 \
        break;
        MC_ERR_LIST(MC__ERR_NAME)
    default:
        return "UNKNOWN_ERROR";
    }
    /* upstream's names: MC_OK -> OK, MC_ERR_OBJECT_NOT_FOUND -> OBJECT_NOT_FOUND,
     * MC_ERR_INTERNAL -> INTERNAL_ERROR */
    if (code == MC_ERR_INTERNAL) return "INTERNAL_ERROR";
    return !strncmp(n, "MC_ERR_", 7) ? n + 7 : n + 3;
}
#undef MC__ERR_NAME

const char *mc_err_str(int code)
{
    switch (code) {
#define MC__ERR_TEXT(name, value, text)                                                            \
    case value:                                                                                    \
        return text;
        MC_ERR_LIST(MC__ERR_TEXT)
#undef MC__ERR_TEXT
    default:
        return "unknown error";
    }
}
