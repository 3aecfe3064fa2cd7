"""pytest setup for tests/cluster: imports from here and from tests/py/mooncake
(mc_fixtures: the build's bin dir, and child_env, which preloads the ASan
runtime for the child pythons that load the sanitizer-built extension)."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "py", "mooncake"))
