/* base_version.c: base_version.h. MC_VERSION_STRING comes from the build
 * (src/base/CMakeLists.txt, the top-level project() version). */
#include "base_version.h"

#include <stdio.h>
#include <string.h>

#ifndef MC_VERSION_STRING
#error "MC_VERSION_STRING is set by src/base/CMakeLists.txt"
#endif

const char *mc_version(void)
{
    return MC_VERSION_STRING;
}

int mc_version_flag(int argc, char *const argv[], const char *prog)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) break;
        if (!strcmp(argv[i], "--version")) {
            printf("%s (mooncake-c) %s\n", prog, mc_version());
            fflush(stdout);
            return 1;
        }
    }
    return 0;
}
