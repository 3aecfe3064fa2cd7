"""A second store process: sets up a store with a 16 MiB segment, prints
"READY <hostname>", then serves stdin: "get <key>" (prints the sha256 hex of
the value, or "MISS"), "quit" (closes the store)."""
import hashlib
import sys

from util import mk_store


def main():
    s = mk_store()
    print("READY %s" % s.get_hostname(), flush=True)
    for line in sys.stdin:
        w = line.split()
        if not w or w[0] == "quit":
            break
        if w[0] == "get":
            v = s.get(w[1])
            print(hashlib.sha256(v).hexdigest() if v else "MISS", flush=True)
    assert s.close() == 0


if __name__ == "__main__":
    main()
