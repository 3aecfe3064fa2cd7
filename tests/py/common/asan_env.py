"""Running the `mooncake` extension in a child python when it is built with
ASan+UBSan (`make test`): a stock python can load it only with the ASan
runtime preloaded, and LD_PRELOAD cannot be set inside a running process, so
the child's environment carries it. Shared by the pytest fixtures
(tests/py/mooncake/mc_fixtures.py) and the soak (tests/soak)."""
import os
import subprocess


def extension_so(py_dir):
    """Path of mooncake/_core*.so under py_dir, or None when not built."""
    d = os.path.join(py_dir, "mooncake")
    if os.path.isdir(d):
        for n in os.listdir(d):
            if n.startswith("_core") and n.endswith(".so"):
                return os.path.join(d, n)
    return None


def needs_asan(so):
    with open(so, "rb") as f:
        return b"__asan_init" in f.read()


def asan_runtime():
    """The ASan runtime of clang (else gcc) to preload, or None."""
    for cc, name in (("clang", "libclang_rt.asan-x86_64.so"), ("gcc", "libasan.so")):
        try:
            p = subprocess.run([cc, "-print-file-name=" + name], capture_output=True, text=True,
                               timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            continue
        path = p.stdout.strip()
        if p.returncode == 0 and os.path.isabs(path) and os.path.exists(path):
            return path
    return None


def preload_asan(env, so):
    """Adds the preload and sanitizer options to env when so is ASan-built.
    Returns False when it is and no runtime was found (env unchanged)."""
    if not needs_asan(so):
        return True
    rt = asan_runtime()
    if not rt:
        return False
    env["LD_PRELOAD"] = rt
    env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=0"
    env["UBSAN_OPTIONS"] = "print_stacktrace=1"
    return True
