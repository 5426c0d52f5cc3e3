#!/usr/bin/env python3
"""Writes seed inputs for every fuzz target into DIR/TARGET/ (fuzz/run.sh
calls it for a target whose corpus is empty): DNS queries and upstream
answers of many shapes, zone-transfer replies, list and config texts, and
the project's own files (config/*.toml, blocklists/*, tests/fixtures/ofac/*)."""
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def name(n):
    out = b""
    for label in n.strip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def header(id_, flags, qd=1, an=0, ns=0, ar=0):
    return struct.pack(">HHHHHH", id_, flags, qd, an, ns, ar)


def question(n, qtype=1, qclass=1):
    return name(n) + struct.pack(">HH", qtype, qclass)


def opt(size=1232, do=False, version=0, options=b"", owner=b"\0"):
    ttl = (version << 16) | (0x8000 if do else 0)
    return owner + struct.pack(">HHIH", 41, size, ttl, len(options)) + options


def option(code, data):
    return struct.pack(">HH", code, len(data)) + data


def rr(owner, rtype, rdata, ttl=60, cls=1):
    return name(owner) + struct.pack(">HHIH", rtype, cls, ttl, len(rdata)) + rdata


def soa(serial, zone="rpz.test"):
    return rr(zone, 6, name("ns." + zone) + name("hostmaster." + zone)
              + struct.pack(">IIIII", serial, 3600, 600, 86400, 60))


def cname(owner, target):
    return rr(owner, 5, name(target))


def query(n, qtype=1, flags=0x0100, edns=None, id_=0x1234):
    ar = b"" if edns is None else edns
    return header(id_, flags, 1, 0, 0, 1 if edns is not None else 0) + question(n, qtype) + ar


def request_seeds():
    s = {}
    for n in ["www.example.com", "seized.example", "www.wild.example", "refused.example",
              "nodata.example", "sink.example", "nx.example", "nod.example",
              "pass.seized.example", "allowed.seized.example", "cached.test", "big.test",
              "WwW.SeIzEd.ExAmPlE"]:
        for qtype in [1, 28, 16]:
            s[f"q-{n}-{qtype}"] = query(n, qtype)
        s[f"q-{n}-edns"] = query(n, 1, edns=opt())
        s[f"q-{n}-edns-do-4096"] = query(n, 28, edns=opt(4096, do=True))
    s["big-edns-512"] = query("big.test", 1, edns=opt(512))
    # Local names (issue 18): records of every type, CNAMEs to a local, a
    # cached and a listed name, default zones, a zone of our own.
    for n, qtype in [("nas.home.arpa", 1), ("nas.home.arpa", 28), ("nas.home.arpa", 15),
                     ("nas.home.arpa", 33), ("nas.home.arpa", 255), ("media.home.arpa", 1),
                     ("ext.home.arpa", 1), ("bad.home.arpa", 1), ("other.home.arpa", 1),
                     ("10.1.168.192.in-addr.arpa", 12), ("x.local", 1), ("db.localhost", 28),
                     ("home.arpa", 6), ("mail.lan", 1), ("box.lan", 1)]:
        s[f"local-{n}-{qtype}"] = query(n, qtype)
        s[f"local-{n}-{qtype}-edns"] = query(n, qtype, edns=opt(512))
    s["local-class-chaos"] = header(37, 0x0100) + question("nas.home.arpa", 1, 3)
    s["local-axfr"] = query("home.arpa", 252)
    s["any"] = query("example.com", 255)
    s["axfr"] = query("rpz.test", 252)
    s["ixfr"] = query("rpz.test", 251)
    s["qtype-opt"] = query("example.com", 41)
    s["cookie-client"] = query("example.com", edns=opt(options=option(10, b"\x01" * 8)))
    s["cookie-full"] = query("seized.example", edns=opt(options=option(10, b"\x02" * 24)))
    s["cookie-bad-len"] = query("example.com", edns=opt(options=option(10, b"\x03" * 5)))
    s["ecs"] = query("example.com", edns=opt(options=option(8, b"\x00\x01\x18\x00\xc0\x00\x02")))
    s["opt-overflow"] = query("example.com", edns=opt(options=b"\x00\x0a\x00\x40\x01\x02"))
    s["opt-version1"] = query("example.com", edns=opt(version=1))
    s["opt-not-root"] = query("example.com", edns=opt(owner=name("x")))
    s["two-opts"] = header(7, 0x0100, 1, 0, 0, 2) + question("example.com") + opt() + opt()
    s["opt-in-answer"] = header(7, 0x0100, 1, 1, 0, 0) + question("example.com") + opt()
    s["compressed-question"] = header(8, 0x0100) + b"\x03www\xc0\x0c" + struct.pack(">HH", 1, 1)
    s["compressed-additional"] = (header(9, 0x0100, 1, 0, 0, 1) + question("example.com")
                                  + b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + b"\x7f\0\0\1")
    s["answer-record"] = (header(10, 0x0100, 1, 1, 0, 0) + question("example.com")
                          + rr("example.com", 1, b"\x7f\0\0\1"))
    s["notify"] = header(11, 0x2000 | 0x0400) + question("rpz.test", 6)
    s["notify-with-soa"] = header(11, 0x2000, 1, 1) + question("rpz.test", 6) + soa(7)
    s["notify-other-zone"] = header(12, 0x2000) + question("other.test", 6)
    s["notify-no-question"] = header(13, 0x2000, 0)
    s["notify-compressed"] = header(14, 0x2000) + b"\xc0\x0c" + struct.pack(">HH", 6, 1)
    for op in [1, 2, 3, 5, 6, 15]:
        s[f"opcode-{op}"] = header(20 + op, op << 11) + question("example.com")
        s[f"opcode-{op}-edns"] = (header(20 + op, op << 11, 1, 0, 0, 1)
                                  + question("example.com") + opt())
    s["qd0"] = header(30, 0x0100, 0)
    s["qd2"] = header(31, 0x0100, 2) + question("a.example") + question("b.example")
    s["response"] = header(32, 0x8180) + question("example.com")
    s["short-header"] = b"\x12\x34\x01"
    s["header-only"] = header(33, 0x0100)
    s["cut-question"] = header(34, 0x0100) + name("example.com")[:6]
    s["trailing"] = query("example.com") + b"\xff\xff"
    s["root"] = query(".", 2)
    s["long-name"] = query(".".join(["a" * 63] * 3 + ["b" * 61]))
    s["label-64"] = header(35, 0x0100) + b"\x40" + b"a" * 64 + b"\0" + struct.pack(">HH", 1, 1)
    s["class-chaos"] = header(36, 0x0100) + question("version.bind", 16, 3)
    s["cd-ad"] = query("example.com", flags=0x0130, edns=opt(do=True))
    s["tc-set"] = query("example.com", flags=0x0300)
    s["rcode-set"] = query("example.com", flags=0x0105)
    return s


def answer(n, records, an=None, ns=0, ar=0, flags=0x8180, qtype=1, qd=1):
    """An upstream's answer to `n` (QR, RD, RA and `flags`' RCODE)."""
    an = len(records) if an is None else an
    return header(0x4242, flags, qd, an - ns - ar, ns, ar) + (question(n, qtype) if qd else b"") + b"".join(records)


def response_seeds():
    a = lambda owner, i=1, ttl=60: rr(owner, 1, bytes([192, 0, 2, i]), ttl)
    up_soa = rr("up.test", 6, name("ns.up.test") + name("h.up.test") + struct.pack(">IIIII", 1, 3600, 600, 86400, 30))
    ede = option(15, b"\x00\x12blocked upstream")
    s = {}
    s["a"] = answer("www.up.test", [a("www.up.test")])
    s["a-compressed"] = answer("www.up.test", [b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 300, 4) + b"\xc0\0\2\1"])
    s["a-opt"] = answer("www.up.test", [a("www.up.test"), opt()], ar=1)
    s["a-opt-ede-cookie"] = answer("www.up.test", [a("www.up.test"), opt(options=option(10, b"\1" * 16) + ede)], ar=1)
    s["opt-overrun"] = answer("www.up.test", [a("www.up.test"), opt(options=option(10, b"\1" * 8) + b"\x00\x0f\x00\x0a\x00\x12xy")], ar=1)
    s["opt-tail"] = answer("www.up.test", [a("www.up.test"), opt(options=ede + b"\x00\x0f\x00")], ar=1)
    s["opt-ede-short"] = answer("www.up.test", [a("www.up.test"), opt(options=option(15, b"\x07"))], ar=1)
    s["opt-extended-rcode"] = answer("www.up.test", [name("") + struct.pack(">HHIH", 41, 1232, 1 << 24, len(ede)) + ede], ar=1)
    s["two-opts"] = answer("www.up.test", [a("www.up.test"), opt(), opt(do=True)], ar=2)
    s["opt-then-glue"] = answer("mx.up.test", [rr("mx.up.test", 15, b"\0\x0a" + name("mail.up.test")), opt(), a("mail.up.test", 2)], ar=2, qtype=15)
    tsig = rr("key", 250, name("hmac-sha256") + b"\0\0\0\0\0\1\x01\x2c\0\0\x42\x42\0\0\0\0", ttl=0, cls=255)
    s["opt-tsig"] = answer("www.up.test", [a("www.up.test"), opt(), tsig], ar=2)
    s["cname-tracker"] = answer("www.up.test", [cname("www.up.test", "cdn.tracker.example"), a("cdn.tracker.example")])
    s["cname-seized"] = answer("www.up.test", [cname("www.up.test", "x.seized.example"), a("x.seized.example")])
    s["cname-sink-nodata"] = answer("www.up.test", [cname("www.up.test", "sink.example"), cname("sink.example", "nodata.example"), a("nodata.example")])
    s["cname-chain-ok"] = answer("www.up.test", [cname("www.up.test", "a.up.test"), cname("a.up.test", "b.up.test"), a("b.up.test")])
    s["dname-wild"] = answer("www.up.test", [rr("up.test", 39, name("x.wild.example")), cname("www.up.test", "www.x.wild.example"), a("www.x.wild.example")])
    s["allowed-cname"] = answer("allowed.seized.example", [cname("allowed.seized.example", "tracker.example"), a("tracker.example")])
    s["cname-opt"] = answer("www.up.test", [cname("www.up.test", "t.tracker.example"), a("t.tracker.example"), opt(options=ede)], ar=1)
    s["nxdomain-soa"] = answer("nx.up.test", [up_soa], ns=1, flags=0x8183)
    s["nodata-soa"] = answer("www.up.test", [up_soa], ns=1, qtype=28)
    s["nxdomain-no-soa"] = answer("nx.up.test", [], flags=0x8183)
    s["servfail"] = answer("www.up.test", [], flags=0x8182)
    s["refused"] = answer("www.up.test", [], flags=0x8185)
    s["formerr-no-question"] = answer("www.up.test", [], flags=0x8181, qd=0)
    s["notimp-no-question-opt"] = answer("www.up.test", [opt()], ar=1, flags=0x8184, qd=0)
    s["nxdomain-no-question"] = answer("www.up.test", [], flags=0x8183, qd=0)
    s["truncated"] = answer("www.up.test", [], flags=0x8380)
    s["ttl-0"] = answer("www.up.test", [a("www.up.test", ttl=0)])
    s["ttl-top-bit"] = answer("www.up.test", [a("www.up.test", ttl=0x80000001)])
    s["big-600"] = answer("big.up.test", [a("big.up.test", i) for i in range(30)])
    s["big-1300"] = answer("big.up.test", [a("big.up.test", i) for i in range(60)] + [opt()], ar=1)
    s["txt"] = answer("t.up.test", [rr("t.up.test", 16, b"\x05hello\x05world")], qtype=16)
    s["upper-question"] = answer("WwW.Up.TeSt", [a("www.up.test")])
    s["qd2"] = header(0x4242, 0x8180, 2, 1) + question("www.up.test") + question("other.up.test") + a("www.up.test")
    s["pointer-loop"] = answer("www.up.test", [b"\xc0\x1d" + struct.pack(">HHIH", 1, 1, 60, 4) + b"\1\2\3\4"])
    s["cut"] = answer("www.up.test", [a("www.up.test")])[:-3]
    s["trailing"] = answer("www.up.test", [a("www.up.test")]) + b"\xff\xff"
    s["opt-in-answer"] = answer("www.up.test", [opt()])
    s["class-chaos"] = header(0x4242, 0x8180, 1, 1) + question("version.bind", 16, 3) + rr("version.bind", 16, b"\x03x.y", cls=3)
    return s


def xfr_input(have, id_, copy, messages):
    data = bytes([1 if have is not None else 0]) + struct.pack(">IHH", have or 0, id_, len(copy))
    data += copy.encode()
    for m in messages:
        data += struct.pack(">H", len(m)) + m
    return data


def reply(id_, records, zone="rpz.test", qtype=252, rcode=0):
    return header(id_, 0x8400 | rcode, 1, len(records)) + question(zone, qtype) + b"".join(records)


COPY = ("$ORIGIN rpz.test.\n"
        "rpz.test. 60 IN SOA ns.rpz.test. hostmaster.rpz.test. 5 3600 600 86400 60\n"
        "rpz.test. 60 IN NS ns.rpz.test.\n"
        "a.example.rpz.test. 60 IN CNAME .\n"
        "*.a.example.rpz.test. 60 IN CNAME .\n"
        "b.example.rpz.test. 60 IN CNAME *.\n")


def xfr_seeds():
    ns = rr("rpz.test", 2, name("ns.rpz.test"))
    a = cname("a.example.rpz.test", ".")
    wa = cname("*.a.example.rpz.test", ".")
    b = cname("b.example.rpz.test", "*.")
    c = cname("c.example.rpz.test", "rpz-passthru.")
    ip = rr("32.1.2.0.192.rpz-ip.rpz.test", 5, name("."))
    txt = rr("t.example.rpz.test", 16, b"\x05hello")
    s = {}
    s["axfr"] = xfr_input(None, 0x4242, "", [reply(0x4242, [soa(5), ns, a, wa, b, soa(5)])])
    s["axfr-two-messages"] = xfr_input(None, 0x4242, "", [reply(0x4242, [soa(5), ns, a]),
                                                          reply(0x4242, [wa, b, c, ip, txt, soa(5)])])
    s["axfr-cut"] = xfr_input(None, 0x4242, "", [reply(0x4242, [soa(5), ns, a])])
    s["axfr-wrong-id"] = xfr_input(None, 0x4242, "", [reply(0x4243, [soa(5), soa(5)])])
    s["axfr-notauth"] = xfr_input(None, 0x4242, "", [reply(0x4242, [], rcode=9)])
    s["axfr-no-soa-first"] = xfr_input(None, 0x4242, "", [reply(0x4242, [a, soa(5), soa(5)])])
    s["ixfr-up-to-date"] = xfr_input(5, 0x4242, COPY, [reply(0x4242, [soa(5)], qtype=251)])
    s["ixfr-diff"] = xfr_input(5, 0x4242, COPY, [reply(0x4242, [
        soa(6), soa(5), a, b, soa(6), c, txt, soa(6)], qtype=251)])
    s["ixfr-two-diffs"] = xfr_input(5, 0x4242, COPY, [
        reply(0x4242, [soa(7), soa(5), a, soa(6), c], qtype=251),
        reply(0x4242, [soa(6), c, soa(7), wa, b, soa(7)], qtype=251)])
    s["ixfr-wrong-start"] = xfr_input(4, 0x4242, COPY, [reply(0x4242, [
        soa(6), soa(4), a, soa(6), c, soa(6)], qtype=251)])
    s["ixfr-axfr-style"] = xfr_input(5, 0x4242, COPY, [reply(0x4242, [soa(9), ns, a, b, soa(9)], qtype=251)])
    s["ixfr-no-copy-soa"] = xfr_input(5, 0x4242, "$ORIGIN rpz.test.\na 60 IN CNAME .\n",
                                      [reply(0x4242, [soa(5)], qtype=251)])
    return s


LISTS = {
    "domains": [
        "# header\nGood.Example\n1.2.3.4\nbad name.example\n*.wild.example\ncom\nlast.example.\r\n",
        "\ufeffexample.com\nb\xc3\xbccher.example\nxn--bcher-kva.example\n# comment\n\n  spaced.example  \n",
        "a.com # trailing comment\n_dmarc.example\n-bad-.example\n" + "x" * 70 + ".example\n",
    ],
    "hosts": [
        "0.0.0.0 a.example b.example # two\n127.0.0.1 localhost\n::1 localhost ip6-localhost\n",
        "# hosts\n0.0.0.0 ads.example\n127.0.0.1\tlocal.example\n255.255.255.255 broadcasthost\n0.0.0.0 0.0.0.0\n",
        "::1 x.example\nfe80::1%lo0 link.example\n0.0.0.0 *.wild.example\n1.2.3.4\n",
    ],
    "adblock": [
        "[Adblock Plus 2.0]\n! Title: x\n||ads.example^\n||tracker.example^$important\n@@||ok.example^\n",
        "example.com##.banner\n||a.example^$third-party\n/regex/\n|http://b.example/|\n||c.example/path^\n",
        "||*.wild.example^\n||d.example^$domain=x.example\n||e.example^|\n0.0.0.0 f.example\nplain.example\n",
    ],
    "rpz": [
        "; RPZ test zone\n$TTL 300\n$ORIGIN rpz.test.\n@ 3600 IN SOA ns.rpz.test. hostmaster.rpz.test. (\n"
        "        2024010101 ; serial\n        3600 600 ; refresh, retry\n        86400 300 ) ; expire, minimum\n"
        "  IN NS ns.rpz.test.\n\nbad.example CNAME .\n*.bad.example CNAME .\nnodata.example CNAME *.\n"
        "pass.example CNAME rpz-passthru.\n",
        "$TTL 300\n$ORIGIN rpz.vendor.test.\n@ SOA ns.vendor.test. h.vendor.test. 1 3600 600 86400 60\n"
        "  NS ns.vendor.test.\n$ORIGIN sub.example.rpz.vendor.test.\nwww CNAME .\nstray.other.test. CNAME .\n",
        "$ORIGIN rpz.test.\n32.1.2.0.192.rpz-ip CNAME .\nns.example.rpz-nsdname CNAME .\n"
        "a.example A 192.0.2.1\nb.example 300 IN TXT \"quoted ; text\"\nc.example CNAME rpz-drop.\n"
        "d.example CNAME rpz-tcp-only.\ne.example CNAME other.example.\n$INCLUDE other.zone\n"
        "f.example IN CNAME . ; comment\ng.example\tCNAME\t*.\n",
        "rpz.test. 60 IN SOA ns.rpz.test. hostmaster.rpz.test. 5 3600 600 86400 60\n"
        "a.example.rpz.test. 60 IN CNAME .\n*.a.example.rpz.test. 60 IN CNAME .\n",
    ],
}

CONFIGS = [
    '[server]\nlisten = ["127.0.0.1:5353"]\n[upstream]\nservers = ["127.0.0.1:53"]\ntimeout_ms = 500\n'
    '[cache]\nsize = 0\n[block]\naction = "sinkhole"\nsinkhole_ipv4 = "0.0.0.0"\nttl = 60\n',
    '[[lists]]\nname = "remote"\nsource = "https://lists.example/seized.txt"\nrefresh = "1h"\n'
    '[[lists]]\nname = "feed"\nsource = "xfr://127.0.0.1:53/rpz.test"\ntsig = "hmac-sha256:key.:c2VjcmV0"\n'
    'format = "rpz"\n',
    '[server]\nlisten = "not a list"\n[upstream]\nservers = [1, 2]\nunknown = true\n',
    'state_dir = "/var/lib/embargo"\n[allow]\ndomains = ["ok.example", "*.ok2.example"]\nfiles = ["allow.txt"]\n',
    '[server]\nlisten = 1979-05-27\n',
    '[[lists]]\nname = "x"\n',
    '[[lists]]\nname = "ofac"\nsource = "sdn.xml"\nformat = "ofac-sdn"\naction = "refused"\nede = "censored"\n',
]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "fuzz", "seeds")
    targets = sys.argv[2:] or ["request", "response", "domains", "hosts", "adblock", "rpz", "config", "xfr", "ofac"]

    def write(target, key, data):
        d = os.path.join(out, target)
        os.makedirs(d, exist_ok=True)
        if isinstance(data, str):
            data = data.encode()
        with open(os.path.join(d, key), "wb") as f:
            f.write(data)

    def files(target, directory, pattern=""):
        d = os.path.join(ROOT, directory)
        for f in sorted(os.listdir(d)):
            if f.endswith(pattern):
                with open(os.path.join(d, f), "rb") as fh:
                    write(target, "file-" + f, fh.read())

    for t in targets:
        if t == "request":
            for k, v in request_seeds().items():
                write(t, k, v)
        elif t == "response":
            for k, v in response_seeds().items():
                write(t, k, v)
        elif t in LISTS:
            for i, text in enumerate(LISTS[t]):
                write(t, f"list-{i}", text)
            files(t, "blocklists")
        elif t == "config":
            for i, text in enumerate(CONFIGS):
                write(t, f"config-{i}", text)
            files(t, "config", ".toml")
        elif t == "xfr":
            for k, v in xfr_seeds().items():
                write(t, k, v)
        elif t == "ofac":
            files(t, "tests/fixtures/ofac")


if __name__ == "__main__":
    main()
