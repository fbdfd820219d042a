#!/usr/bin/env python3
"""Writes the hand-made seeds of fuzz/corpus/ (valid inputs of every kind each binary target
reads); the TOML seeds are copies of the repository's example and scenario files. Run from
anywhere: python3 fuzz/make_seeds.py. Idempotent."""
import hashlib, json, os, struct

HERE = os.path.dirname(os.path.abspath(__file__))
TASK = bytes(range(32))
TASK_HEX = TASK.hex()


def put(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# ---- data plane: HELLO is not a frame; each seed is a stream of frames ----
def frame(kind, rid, body):
    return struct.pack(">IBI", len(body) + 5, kind, rid) + body

hello = b"P2PD\x00\x03\x00\x00"
sync0 = frame(0x01, 1, TASK + struct.pack(">II", 0, 0))
sync = frame(0x01, 2, TASK + struct.pack(">II", 500, 10) + bytes([0b10110101, 0b01]))
get = frame(0x02, 3, TASK + struct.pack(">I", 7))
host = b"host-a"
grant = frame(0x03, 4, TASK + struct.pack(">H", len(host)) + host + struct.pack(">Q", 1893456000) + bytes(32))
# Pieces: 10 pieces of 4 MiB, pieces 0, 2, 9 finished, digests for 0 and 9.
pieces = frame(0x81, 2, struct.pack(">QQIBI", 40 << 20, 4 << 20, 10, 0, 3) + bytes([0b101, 0b10])
               + struct.pack(">I", 2) + struct.pack(">II", 0, 0xDEADBEEF) + struct.pack(">II", 9, 1))
done = frame(0x81, 5, struct.pack(">QQIBI", 5, 4, 2, 1, 0) + bytes([0b11]) + struct.pack(">I", 0))
piece = frame(0x82, 3, struct.pack(">II", 7, 0x12345678) + b"piece bytes")
err = frame(0xE0, 3, bytes([2]) + struct.pack(">H", 19) + b"piece not available")
put("dataplane_frame", "hello-requests", hello[:0] + sync0 + sync + get + grant)
put("dataplane_frame", "replies", pieces + done + piece + err)
put("dataplane_frame", "grant", grant)
put("dataplane_frame", "pieces", pieces)
put("dataplane_frame", "error", err)

# ---- the mirror ----
D = "sha256:" + hashlib.sha256(b"layer").hexdigest()
heads = {
    "ping": "GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1:65001\r\n\r\n",
    "manifest": "GET /v2/library/nginx/manifests/latest?ns=docker.io HTTP/1.1\r\nHost: 127.0.0.1:65001\r\n"
    "Accept: application/vnd.oci.image.index.v1+json\r\nAccept: application/vnd.oci.image.manifest.v1+json\r\n"
    "Authorization: Bearer token\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n\r\n",
    "blob-range": f"GET /v2/library/nginx/blobs/{D}?ns=127.0.0.1%3A5000 HTTP/1.1\r\nHost: m\r\n"
    "Range: bytes=0-1023\r\nUser-Agent: containerd/1.7\r\n\r\n",
    "blob-header": f"HEAD /v2/a/b/c/blobs/{D} HTTP/1.1\r\nHost: m\r\nX-P2p-Upstream: r.trusted.example\r\n"
    "Transfer-Encoding: chunked\r\nTE: trailers\r\nContent-Length: 0\r\n\r\n",
    "tags": "GET /v2/a/tags/list?n=10&last=b HTTP/1.1\r\nHost: m\r\n\r\n",
    "metrics": "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n",
    "healthz": "GET /healthz?x=1 HTTP/1.0\r\n\r\n",
    "post": "POST /v2/a/blobs/uploads/ HTTP/1.1\r\nHost: m\r\nContent-Length: 0\r\n\r\n",
}
for name, head in heads.items():
    put("request_head", name, head)
routes = {
    "ping": "/v2/",
    "manifest-tag": "/v2/bench/nginx/manifests/latest",
    "manifest-digest": f"/v2/library/busy-box_x/manifests/{D}?ns=docker.io",
    "blob": f"/v2/a/b/c/blobs/{D}?ns=127.0.0.1%3A5000&x=1",
    "blob-sha512": "/v2/a/blobs/sha512:abcdef",
    "referrers": f"/v2/a/referrers/{D}",
    "catalog": "/v2/_catalog?n=1",
    "upload": "/v2/a/blobs/uploads/",
    "header": f"/v2/x/blobs/{D}\nquay.io",
    "traversal": "/v2/a/../b/manifests/latest",
}
for name, r in routes.items():
    put("mirror_route", name, r)
for name, r in {"closed": "bytes=2-5", "open": "bytes=2-", "suffix": "bytes=-3", "several": "bytes=0-1, 5-6",
                "spaces": " bytes= 4 - 4 ", "max": "bytes=9-18446744073709551615", "bad": "items=0-1"}.items():
    put("mirror_range", name, r)


# ---- gRPC: protobuf by hand ----
def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])

def field(no, value):
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return varint(no << 3) + varint(value)
    if isinstance(value, float):
        return varint(no << 3 | 1) + struct.pack("<d", value)
    if isinstance(value, str):
        value = value.encode()
    return varint(no << 3 | 2) + varint(len(value)) + value

def msg(*fields):
    return b"".join(field(n, v) for n, v in fields)

def record(tag, body):
    return bytes([tag]) + struct.pack(">H", len(body)) + body

def host_msg(hid, ip, kind=1):
    load = msg((1, 2), (4, 12.5), (5, 40.0))
    return msg((1, msg((1, hid), (2, hid), (3, ip), (4, 65002), (5, 1 << 30), (6, 1 << 30), (7, kind),
                       (8, "idc-a"), (9, "zone|rack"), (11, load))))

def register(peer, hid, back=False, completed=False):
    headers = msg((1, "Authorization"), (2, "Bearer t"))
    return msg((1, msg((1, hid), (2, peer), (3, TASK_HEX), (4, "https://r.example/v2/a/blobs/" + D), (5, D),
                       (6, 4 << 20), (7, 40 << 20), (8, 10), (9, back), (10, headers), (11, completed),
                       (12, "default"))))

def finished(*numbers, parent=None):
    return msg((2, b"".join(field(1, msg((1, n), *([(2, parent)] if parent else []), (3, 1000))) for n in numbers)))

run = b"".join([
    record(0, host_msg("seed-1", "10.0.0.1", kind=2)),
    record(0, host_msg("host-a", "10.0.0.2")),
    record(0, host_msg("host-b", "fd00::3")),
    record(1, register("seed-peer", "seed-1", back=True)),
    record(1, register("peer-a", "host-a")),
    record(1 | (1 << 3), finished(0, 1, 2)),
    record(1, register("peer-b", "host-b")),
    record(1 | (2 << 3), finished(0, parent="peer-a")),
    record(1 | (2 << 3), msg((3, msg((1, 1), (2, "peer-a"))))),
    record(1 | (2 << 3), msg((4, msg((1, "peer-a"), (2, "slow"))))),
    record(1 | (2 << 3), msg((8, b""))),
    record(5, msg((1, TASK_HEX))),
    record(6, msg((1, "peer-b"))),
    record(7, struct.pack(">I", 120_000)),
    record(1 | (1 << 3), msg((5, b""))),
    record(1 | (2 << 3), msg((6, msg((1, "gave up"))))),
    record(1 | (2 << 3), msg((7, msg((1, "no parents"))))),
    record(3, msg((1, "host-b"), (2, TASK_HEX))),
    record(4, msg((1, "peer-a"))),
    record(2, msg((1, "seed-1"))),
])
put("grpc_messages", "session", run)
put("grpc_messages", "register-only", record(0, host_msg("h", "127.0.0.1")) + record(1, register("p", "h")))
put("grpc_messages", "completed", record(0, host_msg("h", "127.0.0.1")) + record(1, register("p", "h", completed=True))
    + record(7, struct.pack(">I", 3_600_000)))

# ---- the store's meta.json ----
def meta(count, finished_bits, completed, digest=True):
    digests = [("%08x" % (i * 2654435761 % (1 << 32))) if finished_bits >> i & 1 else None for i in range(count)]
    bitmap = finished_bits.to_bytes((count + 7) // 8, "little") if count else b""
    return json.dumps({
        "format": 2, "task_id": TASK_HEX, "url": "https://r.example/v2/a/blobs/" + D,
        "content_bytes": count * 4 - 1 if count else 0, "piece_bytes": 4, "piece_count": count,
        "content_digest": D if digest else None, "piece_digests": digests, "finished": bitmap.hex(),
        "completed": completed, "last_access_unix_ms": 1700000000000, "content_mtime_ns": 1700000000000000000,
    }, indent=1)
put("store_meta", "partial", meta(10, 0b1000000101, False))
put("store_meta", "complete", meta(3, 0b111, True))
put("store_meta", "empty", meta(0, 0, True, digest=False))

# ---- preheat: the first byte picks the parser (fuzz_targets/preheat_inputs.rs) ----
H = "sha256:" + hashlib.sha256(b"manifest").hexdigest()
put("preheat_inputs", "image-tag", b"\x00" + b"127.0.0.1:5000/e2e/app:v1")
put("preheat_inputs", "image-digest", b"\x00" + ("harbor.example.com/library/nginx:v1@" + H).encode())
put("preheat_inputs", "image-short", b"\x00" + b"nginx")
put("preheat_inputs", "platform", b"\x01" + b"linux/arm64/v8")
put("preheat_inputs", "harbor-push", b"\x02" + json.dumps({
    "type": "PUSH_ARTIFACT", "occur_at": 1680501893, "operator": "admin",
    "event_data": {"resources": [{"digest": H, "tag": "v1", "resource_url": "harbor.example.com/library/nginx:v1"}],
                   "repository": {"name": "nginx", "namespace": "library", "repo_full_name": "library/nginx",
                                  "repo_type": "private"}}}).encode())
put("preheat_inputs", "harbor-cloudevents", b"\x02" + json.dumps({
    "specversion": "1.0", "type": "harbor.artifact.pushed",
    "data": {"resources": [{"digest": H, "resource_url": "h.example/p/a@" + H}]}}).encode())
put("preheat_inputs", "harbor-delete", b"\x02" + b'{"type":"DELETE_ARTIFACT","event_data":{}}')
put("preheat_inputs", "challenge-bearer", b"\x03" + b'Bearer realm="https://auth.docker.io/token",'
    b'service="registry.docker.io",scope="repository:library/nginx:pull"')
put("preheat_inputs", "challenge-basic", b"\x03" + b'Basic realm="Registry Realm"')
put("preheat_inputs", "manifest", b"\x04" + json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": D, "size": 830},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": H, "size": 1986743}]}).encode())
put("preheat_inputs", "index", b"\x04" + json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [{"digest": H, "size": 500, "platform": {"os": "linux", "architecture": "amd64"}},
                  {"digest": D, "size": 500, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}}]}).encode())
put("preheat_inputs", "docker-config", b"\x05" + json.dumps({
    "auths": {"https://index.docker.io/v1/": {"auth": "YWxpY2U6czNjcmV0"},
              "127.0.0.1:5000": {"username": "bob", "password": "pw"}, "helper.example": {}},
    "credsStore": "desktop"}).encode())
