"""Runs one case function of a case module in this (child) process:
    runner.py <module> <function>
Exit status 0 when it returned, 1 with the traceback when it raised."""
import importlib
import os
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main():
    mod = importlib.import_module(sys.argv[1])
    try:
        getattr(mod, sys.argv[2])()
    except BaseException:
        traceback.print_exc()
        sys.stdout.flush()
        os._exit(1)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
