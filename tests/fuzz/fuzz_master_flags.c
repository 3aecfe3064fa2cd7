/* fuzz_master_flags.c: libFuzzer target for mooncake_master's flag and config
 * parser (master_flags.c). Input starting with 'C': the rest is a config file
 * (written to a memfd, read through --config_path=/proc/self/fd/N), followed
 * by no flags; otherwise the input is a command line, arguments separated by
 * NUL bytes. Whatever the input, parse must return 0, HELP or -EINVAL with a
 * NUL-terminated message, and leave the result in its bounds. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "master_flags.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    setenv("MC_LOG_LEVEL", "error", 1); /* ignored-flag warnings would flood the output */
    return 0;
}

static void check(const mc_master_flags_t *f, int rc, const char *err)
{
    if (rc != 0 && rc != MC_MASTER_FLAGS_HELP && rc != -EINVAL) abort();
    if (rc == -EINVAL && (!err[0] || strnlen(err, 512) == 512)) abort();
    if (rc) return;
    if (f->port < 0 || f->port > 65535 || f->rpc_port < 0 || f->rpc_port > 65535) abort();
    if (f->metrics_port < 0 || f->metrics_port > 65535) abort();
    if (!(f->core.eviction_ratio >= 0 && f->core.eviction_ratio <= 1)) abort();
    if (f->core.client_ttl_ms < 1000) abort();
    if (strnlen(f->rpc_address, sizeof f->rpc_address) == sizeof f->rpc_address) abort();
    if (strnlen(f->cluster_id, sizeof f->cluster_id) == sizeof f->cluster_id) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mc_master_flags_t f;
    char err[512];
    if (size > 1 << 16) return 0;
    if (size >= 1 && data[0] == 'C') {
        int fd = memfd_create("fuzz_master_cfg", MFD_CLOEXEC);
        if (fd < 0) return 0;
        if (size > 1 && write(fd, data + 1, size - 1) != (ssize_t)(size - 1)) {
            close(fd);
            return 0;
        }
        char arg[64];
        snprintf(arg, sizeof arg, "--config_path=/proc/self/fd/%d", fd);
        char *argv[] = {"mooncake_master", arg, NULL};
        int rc = mc_master_flags_parse(&f, 2, argv, err, sizeof err);
        close(fd);
        check(&f, rc, err);
        return 0;
    }
    /* command line: NUL-separated arguments (copied so each is terminated) */
    char *copy = malloc(size + 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    char *argv[34] = {"mooncake_master"};
    int argc = 1;
    for (size_t i = 0; i <= size && argc < 33;) {
        argv[argc++] = copy + i;
        i += strlen(copy + i) + 1;
    }
    argv[argc] = NULL;
    int rc = mc_master_flags_parse(&f, argc, argv, err, sizeof err);
    check(&f, rc, err);
    free(copy);
    return 0;
}
