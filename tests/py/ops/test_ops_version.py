"""One version number: `--version` on every program, `mooncake.__version__`,
the wheel's metadata source and the master's build info all say the
top-level CMakeLists.txt's project() version."""
import os
import re
import subprocess
import sys
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "mooncake"))
from mc_fixtures import ROOT, Master, bin_dir, child_env  # noqa: E402

PROGRAMS = ["mooncake_master", "mooncake_client", "mooncake_proxy",
            "mooncake_http_metadata_server", "transfer_engine_bench"]


def project_version():
    with open(os.path.join(ROOT, "CMakeLists.txt")) as f:
        m = re.search(r"project\(mooncake_c VERSION ([0-9.]+)", f.read())
    assert m, "no project() version in CMakeLists.txt"
    return m.group(1)


@pytest.mark.parametrize("prog", PROGRAMS)
def test_version_flag(prog):
    exe = os.path.join(bin_dir(), prog)
    # --version wins over any other flag, even one that would be refused
    for argv in ([exe, "--version"], [exe, "--no_such_flag=1", "--version"]):
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        assert p.stdout == "%s (mooncake-c) %s\n" % (prog, project_version())
    h = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=30)
    assert h.returncode == 0 and "--version" in h.stdout, h.stdout[-2000:]


def test_python_version_is_the_core_version():
    p = subprocess.run([sys.executable, "-c", "import mooncake; print(mooncake.__version__)"],
                       capture_output=True, text=True, env=child_env(), timeout=60)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == project_version()


def test_wheel_takes_the_cmake_version():
    with open(os.path.join(ROOT, "python", "pyproject.toml")) as f:
        toml = f.read()
    assert re.search(r'^dynamic = \["version"\]', toml, re.M)
    assert not re.search(r"^version\s*=", toml, re.M), "a second version number in pyproject.toml"
    m = re.search(r"^regex = '(.*)'$", toml, re.M)
    assert m and re.search(m.group(1).replace("\\\\", "\\"),
                           open(os.path.join(ROOT, "CMakeLists.txt")).read()).group("value") \
        == project_version()


def test_master_build_info(tmp_path):
    m = Master(tmp_path, extra=["--metrics_host", "127.0.0.1"])
    try:
        text = urllib.request.urlopen("http://%s/metrics" % m.admin, timeout=10).read().decode()
    finally:
        m.stop()
    assert ('master_build_info{version="%s",protocol="2.0.0",implementation="mooncake-c"} 1'
            % project_version()) in text
