#!/usr/bin/python3
"""Known-answer data for kernex's wire tests, made and checked by the reference
jupyter_client (Debian's python3-jupyter-client).

  make_signatures.py                    rewrite the reference cases of signatures.json
  make_signatures.py --kernex FILE      have jupyter_client read the frames kernex
                                        encoded (FILE is written by
                                        `KERNEX_DUMP_ENCODED=FILE unit_wire`) and, if
                                        it accepts every one, store them
  make_signatures.py --check            re-check all of signatures.json against
                                        jupyter_client; exit 1 on any difference
  make_signatures.py --fuzz-corpus DIR  write seed inputs for fuzz_frame_decoder

signatures.json holds:
  reference: messages serialised and signed by jupyter_client's Session.
      unit_wire must compute the same signature over the same bytes, accept
      the frames, and read the parts as jupyter_client reads them ("expected").
  kernex_encoded: frames kernex's encoder produced, each accepted by
      jupyter_client's Session.deserialize when stored, with the parts as
      jupyter_client read them. unit_wire re-encodes the same messages and
      requires identical bytes, so a change in kernex's encoding or signing
      fails the test until these are regenerated (and so re-verified) here.

Frames are stored as hex: buffers and some frames are not UTF-8.
"""

import argparse
import json
import os
import sys

os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")

from jupyter_client.session import DELIM, Session  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUTPUT = os.path.join(HERE, "signatures.json")

KEY_256 = "5e0c2a4b-kernex-known-answer-key"
KEY_512 = "a different key for sha512 \u00e9"  # a non-ASCII key, used as its UTF-8 bytes
FUZZ_KEY = "fuzz-key"  # must match tests/fuzz/fuzz_frame_decoder.cpp


def header(msg_type, n, session="f3a1c0de-0b5e4c1e9a8f7d6c5b4a3921"):
    return {
        "msg_id": f"{session}_4242_{n}",
        "session": session,
        "username": "tester",
        "date": f"2024-05-17T09:30:0{n}.123456Z",
        "msg_type": msg_type,
        "version": "5.3",
    }


def reference_messages():
    """(name, key, scheme, msg, identities, buffers) signed by jupyter_client."""
    request = header("execute_request", 1)
    yield (
        "sha256_execute_request", KEY_256, "hmac-sha256",
        {
            "header": request, "parent_header": {}, "metadata": {},
            "content": {"code": "x = 41\nx + 1", "silent": False, "store_history": True,
                        "user_expressions": {}, "allow_stdin": True, "stop_on_error": True},
        },
        [], [],
    )
    yield (
        "sha512_execute_reply", KEY_512, "hmac-sha512",
        {
            "header": header("execute_reply", 2), "parent_header": request,
            "metadata": {"started": "2024-05-17T09:30:01.200000Z", "dependencies_met": True},
            "content": {"status": "ok", "execution_count": 7, "user_expressions": {},
                        "payload": [], "ratio": 0.1, "big": 12345678901234567890, "neg": -3},
        },
        [b"\x00k\x8bE", b"f3a1c0de-0b5e4c1e9a8f7d6c5b4a3921"], [],
    )
    yield (
        "sha256_unicode_stream", KEY_256, "hmac-sha256",
        {
            "header": header("stream", 3), "parent_header": request, "metadata": {},
            "content": {"name": "stdout",
                        "text": "h\u00e9llo w\u00f6rld \u2014 \u2211 \U0001f600 \u2028 "
                                "\"quoted\" back\\slash\ttab\nnewline \x01 \u00ff\u4e2d\u6587\n"},
        },
        [], [],
    )
    yield (
        "sha256_comm_buffers", KEY_256, "hmac-sha256",
        {
            "header": header("comm_msg", 4), "parent_header": request, "metadata": {},
            "content": {"comm_id": "c0ffee", "data": {"method": "update", "buffer_paths": [["a"], ["b"], ["c"]]}},
        },
        [b"router-id"], [b"\x00\x01\x02\xff\xfe", b"", DELIM],
    )
    yield (
        # jupyter_client packs with errors="surrogateescape", so a lone
        # surrogate escape becomes a byte that is not UTF-8; it unpacks with
        # errors="replace", reading U+FFFD.
        "sha512_surrogate_escape", KEY_512, "hmac-sha512",
        {
            "header": header("display_data", 5), "parent_header": request, "metadata": {},
            # Ill-formed sequences of several kinds: a stray byte, an encoded
            # surrogate, a truncated 4-byte sequence, a lead byte alone.
            "content": {"data": {"text/plain": "bad byte: \udcff! \udced\udca0\udc80 \udcf0\udc9f\udc98! \udcc3 end"},
                        "metadata": {}, "transient": {}},
        },
        [], [],
    )
    yield (
        "unsigned_status", "", "hmac-sha256",
        {
            "header": header("status", 6), "parent_header": request, "metadata": {},
            "content": {"execution_state": "idle"},
        },
        [], [],
    )


def session_for(key, scheme):
    return Session(key=key.encode("utf-8"), signature_scheme=scheme, check_pid=False)


def read_parts(session, frames):
    """The four JSON parts as jupyter_client unpacks them (no date conversion)."""
    idents, rest = session.feed_identities(frames)
    session.deserialize(rest)  # raises unless jupyter_client accepts the frames
    return idents, rest, {
        name: session.unpack(part)
        for name, part in zip(("header", "parent_header", "metadata", "content"), rest[1:5])
    }


def reference_case(name, key, scheme, msg, identities, buffers):
    session = session_for(key, scheme)
    frames = session.serialize(msg, ident=identities) + buffers
    idents, rest, parts = read_parts(session_for(key, scheme), frames)
    return {
        "name": name, "key": key, "scheme": scheme,
        "frames_hex": [f.hex() for f in frames],
        "signature": rest[0].decode("ascii"),
        "expected": dict(parts, identities_hex=[i.hex() for i in idents],
                         buffers_hex=[b.hex() for b in rest[5:]]),
    }


def verify_kernex_case(case):
    """Returns the case with what jupyter_client read; raises if it refuses it."""
    frames = [bytes.fromhex(f) for f in case["frames_hex"]]
    try:
        idents, rest, parts = read_parts(session_for(case["key"], case["scheme"]), frames)
    except Exception as e:
        raise SystemExit(f"jupyter_client refused kernex's frames for {case['name']}: {e!r}")
    return {
        "name": case["name"], "key": case["key"], "scheme": case["scheme"],
        "frames_hex": case["frames_hex"],
        "read_by_jupyter_client": dict(parts, identities_hex=[i.hex() for i in idents],
                                       buffers_hex=[b.hex() for b in rest[5:]]),
    }


def load():
    if os.path.exists(OUTPUT):
        with open(OUTPUT, encoding="ascii") as f:
            return json.load(f)
    return {"reference": [], "kernex_encoded": []}


def save(data):
    data["generated_by"] = (f"tests/data/make_signatures.py with jupyter_client "
                            f"{__import__('jupyter_client').__version__}")
    with open(OUTPUT, "w", encoding="ascii") as f:
        json.dump(data, f, indent=1, ensure_ascii=True, sort_keys=True)
        f.write("\n")


def check(data):
    failures = []
    for want, got in zip(data["reference"], [reference_case(*m) for m in reference_messages()]):
        if want != got:
            failures.append(f"reference case {want['name']} differs from what jupyter_client makes now")
    if len(data["reference"]) != len(list(reference_messages())):
        failures.append("reference cases are missing")
    for case in data["kernex_encoded"]:
        if verify_kernex_case(case) != case:
            failures.append(f"jupyter_client reads kernex case {case['name']} differently")
    if not data["kernex_encoded"]:
        failures.append("no kernex_encoded cases")
    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    return 1 if failures else 0


def fuzz_corpus(directory):
    """Seeds: frames joined by newlines, as the fuzz target splits them."""
    os.makedirs(directory, exist_ok=True)
    seeds = {}
    for name, key, scheme, msg, identities, buffers in reference_messages():
        if scheme != "hmac-sha256":  # the fuzz target's signed codec is sha256
            continue
        frames = session_for(FUZZ_KEY if key else "", scheme).serialize(msg, ident=identities) + buffers
        seeds[name.replace("sha256_", "signed_")] = b"\n".join(frames)
    seeds["unsigned_minimal"] = b"\n".join([DELIM, b"", b'{"msg_type":"x"}', b"{}", b"{}", b"{}"])
    seeds["no_delimiter"] = b"a\nb\nc\nd\ne\nf"
    seeds["bad_json"] = b"\n".join([DELIM, b"", b'{"msg_type":', b"{}", b"[]", b"{}"])
    for name, data in seeds.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernex", metavar="FILE")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--fuzz-corpus", metavar="DIR")
    args = parser.parse_args()

    data = load()
    if args.check:
        return check(data)
    if args.fuzz_corpus:
        fuzz_corpus(args.fuzz_corpus)
        return 0
    if args.kernex:
        with open(args.kernex, encoding="utf-8") as f:
            data["kernex_encoded"] = [verify_kernex_case(c) for c in json.load(f)["cases"]]
    else:
        data["reference"] = [reference_case(*m) for m in reference_messages()]
    save(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
