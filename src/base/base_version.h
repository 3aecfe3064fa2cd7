/* base_version.h: the one version number of mooncake-c (CMake's project
 * version), for `--version` on every program, the master's build info and
 * the Python package's __version__.
 * Thread rule: any thread; nothing is kept. */
#ifndef MC_BASE_VERSION_H
#define MC_BASE_VERSION_H

/* "MAJOR.MINOR.PATCH", a static string. */
const char *mc_version(void);

/* When argv[1..argc) holds `--version` (before any `--`), prints
 * "<prog> (mooncake-c) <version>" on stdout and returns 1; else 0. Call it
 * first in main, so that `--version` wins over every other flag. */
int mc_version_flag(int argc, char *const argv[], const char *prog);
#endif
