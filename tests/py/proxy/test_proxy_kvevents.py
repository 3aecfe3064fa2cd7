"""The precise mode of cache_aware: mooncake_proxy subscribes to each prefiller's vLLM KV
events (--kv-events) and routes a token-id prompt to the instance whose events say it holds
the longest prefix. Fake publishers send the wire format of vLLM 0.32
(vllm/distributed/kv_events.py): ZMQ multipart [topic, seq as 8 bytes big-endian, msgpack
payload], the payload an EventBatch array [ts, events, dp_rank] whose events are maps tagged
by "type" (BlockStored / BlockRemoved / AllBlocksCleared). An XPUB socket tells the fake when
the proxy's SUB has subscribed, so nothing is sent before anyone listens. Malformed messages
are counted and dropped; the proxy keeps serving and exits cleanly."""

import hashlib
import time

import pytest

from test_proxy_admin import demo
from test_proxy_routing import metric, wait_for

zmq = pytest.importorskip("zmq")
msgpack = pytest.importorskip("msgpack")

TOPIC = b"kv@test"
BS = 16


class Publisher:
    """A fake vLLM KV event publisher: XPUB bound to a free port of 127.0.0.1."""

    def __init__(self):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.XPUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = "tcp://127.0.0.1:%d" % port
        self.seq = 0

    def wait_subscribed(self, timeout=10):
        """Returns the subscription frame the proxy sent (b'\\x01' + topic)."""
        assert self.sock.poll(timeout * 1000), "no subscriber within %ss" % timeout
        return self.sock.recv()

    def frames(self, frames):
        self.sock.send_multipart(frames)

    def batch(self, events, seq=None):
        payload = msgpack.packb([time.time(), events, None], use_bin_type=True)
        if seq is None:
            seq, self.seq = self.seq, self.seq + 1
        self.frames([TOPIC, seq.to_bytes(8, "big"), payload])

    def close(self):
        self.sock.close()
        self.ctx.term()


def bhash(*ids):
    """A vLLM-like block hash: 32 bytes."""
    return hashlib.sha256(repr(ids).encode()).digest()


def stored(tokens, first_block, parent, hashes_of=bhash, bs=BS):
    """BlockStored for the full blocks of tokens, numbered from first_block."""
    n = len(tokens) // bs
    return {"type": "BlockStored", "block_hashes": [hashes_of(first_block + i) for i in range(n)],
            "parent_block_hash": parent, "token_ids": tokens[:n * bs], "block_size": bs,
            "lora_id": None, "medium": "GPU", "lora_name": None}


def removed(hashes):
    return {"type": "BlockRemoved", "block_hashes": hashes, "medium": "GPU"}


def kv(px, inst):
    for i in px.status()["prefill"]:
        if i["instance"] == inst.addr:
            return i.get("kv_events")
    raise AssertionError("no prefill instance %s" % inst.addr)


@pytest.fixture
def pubs():
    made = []

    def make(n):
        for _ in range(n):
            made.append(Publisher())
        return made[-n:]

    yield make
    for p in made:
        p.close()


def start(fakes, proxy, pubs, n_live=2, extra=()):
    """Demo mode, two prefillers, cache_aware; the first n_live get a publisher."""
    ev = pubs(n_live)
    ps_probe = [fakes("P%d" % i) for i in range(2)]
    d = fakes("D0")
    args = ["--model", "test-model", "-p"] + [p.addr for p in ps_probe] + ["-d", d.addr,
            "--scheduling", "cache_aware", "--kv-events-topic", TOPIC.decode()]
    for p, e in zip(ps_probe, ev):
        args += ["--kv-events", "%s=%s" % (p.addr, e.endpoint)]
    px = proxy(args + list(extra))
    px.wait_ready(pred=lambda s: all(i["healthy"] for i in s["prefill"] + s["decode"]))
    for e in ev:
        assert e.wait_subscribed() == b"\x01" + TOPIC
    return ps_probe, d, px, ev


def last_prefill(px):
    return [x for x in px.status()["recent_decisions"] if x["type"] == "prefill"][0]


def served_by(ps, n_before):
    """Index of the prefiller that got the latest request (exactly one got it)."""
    now = [len(p.completions()) for p in ps]
    got = [i for i in range(len(ps)) if now[i] > n_before[i]]
    assert len(got) == 1, (now, n_before)
    return got[0]


def send(px, ps, prompt):
    before = [len(p.completions()) for p in ps]
    st = px.request("POST", "/v1/completions", {"prompt": prompt, "max_tokens": 4})[0]
    assert st == 200
    return served_by(ps, before)


def test_routing_follows_kv_events(fakes, proxy, pubs):
    ps, d, px, ev = start(fakes, proxy, pubs)
    toks = list(range(1000, 1064))  # 4 blocks of 16
    # P1 stores blocks 0..2, in two events chained by parent_block_hash.
    ev[1].batch([stored(toks[:16], 0, None)])
    ev[1].batch([stored(toks[16:48], 1, bhash(0))])
    wait_for(lambda: kv(px, ps[1])["blocks"] == 3)
    k = kv(px, ps[1])
    assert (k["live"], k["block_size"], k["events"], k["stored_blocks"]) == (True, BS, 2, 3)
    assert k["endpoint"] == ev[1].endpoint and k["bad_messages"] == 0 and k["orphans"] == 0
    # round robin would start at P0; the events send it to P1, which holds 48 tokens of it
    assert send(px, ps, toks) == 1
    dec = last_prefill(px)
    assert (dec["reason"], dec["match_tokens"], dec["match_source"]) == ("cache_hit", 48,
                                                                       "kv_events")
    # a prompt that diverges inside block 1 matches block 0 only
    assert send(px, ps, toks[:20] + [7] * 44) == 1
    assert last_prefill(px)["match_tokens"] == 16

    # P1 evicts blocks 1 and 2, P0 stores all four: P0 wins with 64
    ev[1].batch([removed([bhash(1), bhash(2)])])
    ev[0].batch([stored(toks, 0, None)])
    wait_for(lambda: kv(px, ps[1])["blocks"] == 1 and kv(px, ps[0])["blocks"] == 4)
    assert send(px, ps, toks) == 0
    assert last_prefill(px)["match_tokens"] == 64
    # P0 clears its cache (AllBlocksCleared): back to P1 and its one block
    ev[0].batch([{"type": "AllBlocksCleared"}])
    wait_for(lambda: kv(px, ps[0])["blocks"] == 0 and kv(px, ps[0])["cleared"] == 1)
    assert send(px, ps, toks) == 1
    assert last_prefill(px)["match_tokens"] == 16
    # a block whose parent the proxy never saw is an orphan, not a guess
    ev[0].batch([stored(toks[16:32], 50, bhash(49))])
    wait_for(lambda: kv(px, ps[0])["orphans"] == 1)
    assert kv(px, ps[0])["blocks"] == 0
    # integer block hashes (vLLM's non-sha256 hashing) work the same way
    ev[0].batch([stored(toks[:32], 0, None, hashes_of=lambda i: 1 << 40 | i)])
    wait_for(lambda: kv(px, ps[0])["blocks"] == 2)
    assert send(px, ps, toks) == 0 and last_prefill(px)["match_tokens"] == 32
    # a text prompt needs its token ids, and these fakes have no /tokenize (404): the
    # approximate index decides, and that instance is not asked again
    assert px.request("POST", "/v1/completions", {"prompt": "hello " * 40})[0] == 200
    assert last_prefill(px)["match_source"] == "approximate"
    assert metric(px, "mooncake_proxy_tokenize_total", result="unsupported") == 1
    assert metric(px, "mooncake_proxy_kv_blocks", instance=ps[0].addr) == 2
    assert metric(px, "mooncake_proxy_kv_events_total", instance=ps[1].addr, result="ok") == 3


def test_instance_without_events_uses_the_approximate_index(fakes, proxy, pubs):
    """P0 has a subscription that never publishes, P1 none: a token-id conversation is
    kept on one prefiller by the approximate index, as without --kv-events."""
    ps, d, px, ev = start(fakes, proxy, pubs, n_live=1)
    assert kv(px, ps[0])["live"] is False and kv(px, ps[1]) is None
    conv = list(range(5000, 5200))
    where = {send(px, ps, conv[:100 + 20 * t]) for t in range(4)}
    assert len(where) == 1
    pre = last_prefill(px)
    assert pre["match_source"] == "approximate" and pre["reason"] == "cache_hit"


def test_bad_events_are_counted_and_dropped(fakes, proxy, pubs):
    ps, d, px, ev = start(fakes, proxy, pubs)
    p = ev[0]
    good = msgpack.packb([1.0, [stored(list(range(32)), 0, None)], None], use_bin_type=True)
    n = iter(range(100))
    seq = lambda: next(n).to_bytes(8, "big")  # consecutive: no gaps counted
    bad_msgs = [
        [TOPIC, seq(), good[:len(good) // 2]],              # truncated payload
        [TOPIC, seq(), b"\xc1\x00garbage"],                 # not msgpack
        [TOPIC, seq(), msgpack.packb({"ts": 1.0})],          # not an event batch
        # an array header declaring 2^32-1 elements in a 16-byte message
        [TOPIC, seq(), bytes([0x92, 0xcb]) + bytes(8) + bytes([0xdd, 0xff, 0xff, 0xff, 0xff])],
        [TOPIC, b"\x00" * 8],                                # two frames
        [TOPIC, b"\x00" * 7, good],                          # seq of 7 bytes
        [TOPIC, b"\x00" * 8, good, b"extra"],                # four frames
        [TOPIC, seq(), good + b"\x00"],                      # trailing byte
        [TOPIC, seq(), b""],                                 # empty payload
    ]
    for m in bad_msgs:
        p.frames(m)
    # a batch with one bad event (3 tokens for a block of 16) between two good ones, one of
    # an unknown type, and one with a bad hash type
    p.frames([TOPIC, seq(), msgpack.packb([2.0, [
        stored(list(range(16)), 0, None),
        dict(stored(list(range(16)), 1, None), token_ids=[1, 2, 3]),
        {"type": "SomethingNewer", "x": 1},
        dict(removed([1.5])),
        stored(list(range(16, 32)), 1, bhash(0)),
    ], None], use_bin_type=True)])
    wait_for(lambda: kv(px, ps[0])["messages"] == len(bad_msgs) + 1)
    k = kv(px, ps[0])
    assert k["bad_messages"] == len(bad_msgs), k
    assert (k["events"], k["bad_events"], k["ignored"], k["blocks"]) == (3, 2, 1, 2), k
    assert metric(px, "mooncake_proxy_kv_event_messages_total", instance=ps[0].addr,
                  result="bad") == len(bad_msgs)
    assert k["seq_gaps"] == 0, k
    # a jump in the sequence numbers is counted; a restart (seq back to 0) forgets the blocks
    p.batch([], seq=next(n) + 5)
    wait_for(lambda: kv(px, ps[0])["seq_gaps"] == 5)
    p.batch([], seq=0)
    wait_for(lambda: kv(px, ps[0])["seq_gaps"] == 6)
    assert kv(px, ps[0])["blocks"] == 0
    # still serving, and precise routing still works afterwards
    p.batch([stored(list(range(32)), 0, None)], seq=1)
    wait_for(lambda: kv(px, ps[0])["blocks"] == 2)
    assert send(px, ps, list(range(40))) == 0
    assert last_prefill(px)["match_tokens"] == 32
    assert kv(px, ps[1])["bad_messages"] == 0


def test_admin_add_with_kv_events(fakes, proxy, pubs):
    """/instances/add {"kv_events": endpoint} subscribes a prefiller added at run time (the
    proxy was started without --kv-events); /instances/remove closes the subscription."""
    ps, ds, px = demo(fakes, proxy, n_p=1, n_d=1,
                      extra=["--scheduling", "cache_aware", "--kv-events-topic", TOPIC.decode()])
    key = {"X-API-Key": "s3cret"}
    new = fakes("P9")
    (ev,) = pubs(1)
    st, b = px.json("POST", "/instances/add", {"type": "decode", "instance": new.addr,
                                                "kv_events": ev.endpoint}, key)
    assert st == 400 and "kv_events" in b["error"]["message"]
    st, b = px.json("POST", "/instances/add", {"type": "prefill", "instance": new.addr,
                                                "kv_events": 5}, key)
    assert st == 400
    st, b = px.json("POST", "/instances/add", {"type": "prefill", "instance": new.addr,
                                                "kv_events": ev.endpoint}, key)
    assert st == 200, b
    assert ev.wait_subscribed() == b"\x01" + TOPIC
    toks = list(range(300, 364))
    ev.batch([stored(toks, 0, None)])
    wait_for(lambda: (kv(px, new) or {}).get("blocks") == 4)
    both = [ps[0], new]
    assert send(px, both, toks) == 1
    assert last_prefill(px)["match_source"] == "kv_events"
    st, b = px.json("POST", "/instances/remove", {"type": "prefill", "instance": new.addr}, key)
    assert st == 200
    assert ev.wait_subscribed() == b"\x00" + TOPIC  # the SUB socket went away


def words(text):
    """The fakes' tokenizer: "t17 t18" -> [17, 18]."""
    return [int(w[1:]) for w in text.split()]


def text(ids):
    return " ".join("t%d" % i for i in ids)


def test_text_prompts_are_tokenized_and_matched_by_events(fakes, proxy, pubs):
    """A text prompt, and a chat request, get their token ids from a publishing prefiller's
    POST /tokenize and are then routed by the events like a token-id prompt; the body sent
    there carries what decides the tokens and nothing else."""
    ps, d, px, ev = start(fakes, proxy, pubs)
    for p in ps:
        p.tokenize = lambda q: words(q["prompt"]) if "prompt" in q else \
            [9] + words(" ".join(m["content"] for m in q["messages"]))
    toks = list(range(2000, 2064))
    ev[1].batch([stored(toks[:48], 0, None)])
    wait_for(lambda: kv(px, ps[1])["blocks"] == 3)
    n_calls = sum(len(p.tokenize_calls()) for p in ps)
    assert send(px, ps, text(toks)) == 1
    dec = last_prefill(px)
    assert (dec["reason"], dec["match_tokens"], dec["match_source"]) == ("cache_hit", 48,
                                                                       "kv_events")
    calls = [c for p in ps for c in p.tokenize_calls()][n_calls:]
    assert len(calls) == 1
    assert calls[0].json == {"prompt": text(toks)}  # "model" only when the request names one
    assert calls[0].headers["content-type"] == "application/json"
    # the completion itself goes out unchanged: the text, not the ids
    assert ps[1].completions()[-1].json["prompt"] == text(toks)

    # chat: the messages and their template options, tokenized the same way ([9] first)
    ev[0].batch([stored([9] + toks[:31], 0, None)])
    wait_for(lambda: kv(px, ps[0])["blocks"] == 2)
    before = [len(p.completions()) for p in ps]
    msgs = [{"role": "user", "content": text(toks[:40])}]
    st = px.request("POST", "/v1/chat/completions",
                    {"model": "test-model", "messages": msgs, "max_tokens": 2,
                     "add_generation_prompt": True, "temperature": 0})[0]
    assert st == 200 and served_by(ps, before) == 0
    assert last_prefill(px)["match_tokens"] == 32
    q = max((c for p in ps for c in p.tokenize_calls()), key=lambda c: c.t).json
    assert q == {"model": "test-model", "messages": msgs, "add_generation_prompt": True}
    assert metric(px, "mooncake_proxy_tokenize_total", result="ok") == 2
    assert px.status()["cache_aware"]["tokenize"] == {
        "mode": "auto", "timeout_ms": 500, "ok": 2, "failed": 0, "unsupported": 0}

    # a token-id prompt, a batch of texts and an empty text are not sent to /tokenize
    n_calls = sum(len(p.tokenize_calls()) for p in ps)
    send(px, ps, toks)
    send(px, ps, [text(toks), "t1"])
    assert sum(len(p.tokenize_calls()) for p in ps) == n_calls


def test_tokenize_failures_route_by_the_approximate_index(fakes, proxy, pubs):
    """A /tokenize that is too slow, answers an error or garbage, or is missing never fails
    the request nor takes the instance out of rotation: the approximate index routes it.
    Each streak of failures is one log line naming the instance and the cause."""
    ps, d, px, ev = start(fakes, proxy, pubs, n_live=1, extra=["--tokenize-timeout-ms", "200"])
    p0 = ps[0]  # the only publisher: every tokenize goes there
    ev[0].batch([stored(list(range(64)), 0, None)])
    wait_for(lambda: kv(px, p0)["blocks"] == 4)
    p0.tokenize = lambda q: words(q["prompt"])
    p0.tokenize_delay = 1.0
    t0 = time.monotonic()
    assert px.request("POST", "/v1/completions", {"prompt": text(range(64))})[0] == 200
    assert time.monotonic() - t0 < 0.9  # bounded by the timeout, not the slow answer
    assert last_prefill(px)["match_source"] == "approximate"
    p0.tokenize_delay = 0
    p0.tokenize = lambda q: b'{"count": 2, "tokens": ["a", "b"]}'
    assert px.request("POST", "/v1/completions", {"prompt": text(range(64))})[0] == 200
    p0.tokenize = lambda q: b"not json"
    assert px.request("POST", "/v1/completions", {"prompt": text(range(64))})[0] == 200
    # vLLM's 404 for a model it does not serve is about the request, not the route
    p0.tokenize = None
    p0.tokenize_404 = b'{"error": {"message": "The model `x` does not exist.", "code": 404}}'
    assert px.request("POST", "/v1/completions",
                      {"prompt": text(range(64)), "model": "x"})[0] == 200
    p0.tokenize_404 = None
    assert metric(px, "mooncake_proxy_tokenize_total", result="failed") == 4
    err = px.stderr()
    lines = [ln for ln in err.splitlines() if "/tokenize on %s failed" % p0.addr in ln]
    assert len(lines) == 1 and "timed out" in lines[0], err
    assert all(i["healthy"] for i in px.status()["prefill"])
    # a good answer ends the streak: routed by the events again
    p0.tokenize = lambda q: words(q["prompt"])
    assert send(px, ps, text(range(64))) == 0
    assert last_prefill(px)["match_source"] == "kv_events"
    # 404: one line, and the instance is not asked again
    p0.tokenize = None
    for _ in range(3):
        assert px.request("POST", "/v1/completions", {"prompt": text(range(64))})[0] == 200
    assert len(p0.tokenize_calls()) == 6
    assert metric(px, "mooncake_proxy_tokenize_total", result="unsupported") == 1
    assert [i.get("tokenize") for i in px.status()["prefill"]] == [False, None]
    assert "%s has no POST /tokenize (HTTP 404)" % p0.addr in px.stderr()


def test_tokenize_off(fakes, proxy, pubs):
    ps, d, px, ev = start(fakes, proxy, pubs, extra=["--tokenize", "off"])
    for p in ps:
        p.tokenize = lambda q: words(q["prompt"])
    ev[1].batch([stored(list(range(48)), 0, None)])
    wait_for(lambda: kv(px, ps[1])["blocks"] == 3)
    assert px.request("POST", "/v1/completions", {"prompt": text(range(48))})[0] == 200
    assert last_prefill(px)["match_source"] == "approximate"
    assert not any(p.tokenize_calls() for p in ps)
    assert px.status()["cache_aware"]["tokenize"]["mode"] == "off"
