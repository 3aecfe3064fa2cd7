/* base_flags.c: the argv scanner and value parsers of base_flags.h. The scan
 * knows the syntax only; what a flag means (its type, storage, bounds) stays
 * in the caller's table (master_flags.c, apps/mooncake_client.c). */
#include "base_flags.h"

#include <ctype.h>
#include <errno.h>
#include <math.h> /* isfinite */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void fl_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fl_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int mc_flags_bool_word(const char *s)
{
    static const char *const yes[] = {"true", "t", "yes", "y", "1"};
    static const char *const no[] = {"false", "f", "no", "n", "0"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (!strcasecmp(s, yes[i])) return 1;
        if (!strcasecmp(s, no[i])) return 0;
    }
    return -1;
}

int mc_flags_scan(int argc, char *const argv[], const mc_flags_ops_t *ops, char *err, size_t errlen)
{
    if (err && errlen) err[0] = '\0';
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || !a[1]) {
            fl_err(err, errlen, "unexpected argument '%s'", a);
            return -EINVAL;
        }
        const char *name = a + (a[1] == '-' ? 2 : 1);
        if (!*name) { /* "--" ends the flags; nothing may follow */
            if (i + 1 < argc) {
                fl_err(err, errlen, "unexpected argument '%s'", argv[i + 1]);
                return -EINVAL;
            }
            break;
        }
        const char *eq = strchr(name, '=');
        size_t nl = eq ? (size_t)(eq - name) : strlen(name);
        if ((nl == 4 && !memcmp(name, "help", 4)) || (nl == 1 && name[0] == 'h'))
            return MC_FLAGS_HELP;
        int is_bool = 0;
        int idx = ops->lookup(ops->ctx, name, nl, &is_bool);
        const char *v = eq ? eq + 1 : NULL;
        const char *canon = name;
        size_t cl = nl;
        if (idx < 0 && !eq && nl > 2 && !memcmp(name, "no", 2)) { /* --noflag for booleans */
            int nb = 0;
            int ni = ops->lookup(ops->ctx, name + 2, nl - 2, &nb);
            if (ni >= 0 && nb) {
                idx = ni;
                is_bool = 1;
                v = "false";
                canon = name + 2;
                cl = nl - 2;
            }
        }
        if (idx < 0) {
            fl_err(err, errlen, "unknown flag '%.*s'", (int)(name - a + nl), a);
            return -EINVAL;
        }
        char what[160];
        snprintf(what, sizeof what, "--%.*s", (int)cl, canon);
        if (!v) {
            if (is_bool) {
                /* bare --flag is true; a following true/false word is its value */
                v = "true";
                if (i + 1 < argc && mc_flags_bool_word(argv[i + 1]) >= 0) v = argv[++i];
            } else if (i + 1 < argc) {
                v = argv[++i];
            } else {
                fl_err(err, errlen, "flag %s needs a value", what);
                return -EINVAL;
            }
        }
        int rc = ops->apply(ops->ctx, idx, v, what, err, errlen);
        if (rc) return rc;
    }
    return 0;
}

int mc_parse_byte_size(const char *s, uint64_t *out)
{
    if (!s) return -EINVAL;
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    if (n == 8 && !strncasecmp(s, "infinite", 8)) {
        *out = UINT64_MAX;
        return 0;
    }
    if (!isdigit((unsigned char)*s) && *s != '.') return -EINVAL;
    /* the number: digits with at most one '.', parsed by strtod */
    char num[64];
    size_t k = 0;
    int dots = 0, digits = 0;
    while (k < n && (isdigit((unsigned char)s[k]) || (s[k] == '.' && !dots))) {
        if (s[k] == '.')
            dots++;
        else
            digits++;
        k++;
    }
    if (!digits || k >= sizeof num) return -EINVAL;
    memcpy(num, s, k);
    num[k] = '\0';
    const char *u = s + k;
    while (u < s + n && isspace((unsigned char)*u))
        u++;
    size_t ul = (size_t)(s + n - u);
    static const struct {
        const char *name;
        unsigned shift;
    } units[] = {{"", 0},    {"b", 0},  {"k", 10},  {"kb", 10}, {"m", 20},
                 {"mb", 20}, {"g", 30}, {"gb", 30}, {"t", 40},  {"tb", 40}};
    int shift = -1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strlen(units[i].name) == ul && !strncasecmp(u, units[i].name, ul))
            shift = (int)units[i].shift;
    if (shift < 0) return -EINVAL;
    errno = 0;
    double v = strtod(num, NULL);
    if (errno || !isfinite(v) || v < 0) return -EINVAL;
    double bytes = v * (double)(1ULL << shift);
    if (bytes >= 18446744073709551616.0) return -EINVAL; /* 2^64 */
    *out = (uint64_t)bytes;
    return 0;
}
