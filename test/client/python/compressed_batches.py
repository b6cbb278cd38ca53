"""A Python client of Sluice's batch compression, with stock libraries only (Debian's python3-msgpack
and httpx; zlib for gzip; python3-lz4 and python3-zstandard for lz4 and zstd).

It builds a compressed batch from the byte layout in docs/storage-format.md (CRC-32C computed
here), produces it to a partition, then fetches it back twice: naming the codec in
Sluice-Accept-Compression (the batch comes as stored and is decompressed here) and without it (the
broker decompresses; a plain msgpack decode reads the records). Prints one JSON line.

usage: compressed_batches.py BASE_URL TOPIC CODEC
"""
import json
import struct
import sys
import zlib

import httpx
import msgpack

CODECS = {"none": 0, "gzip": 1, "lz4": 3, "zstd": 4}


def crc32c_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


TABLE = crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def compress(codec, data):
    if codec == "gzip":
        return zlib.compress(data, 6, wbits=31)  # wbits 31: a gzip member
    if codec == "lz4":
        import lz4.frame
        return lz4.frame.compress(data, block_linked=True, content_checksum=True)
    if codec == "zstd":
        import zstandard
        return zstandard.ZstdCompressor(level=3).compress(data)
    raise ValueError(codec)


def decompress(codec, data):
    if codec == "gzip":
        return zlib.decompress(data, wbits=31)
    if codec == "lz4":
        import lz4.frame
        return lz4.frame.decompress(data)
    if codec == "zstd":
        import zstandard
        return zstandard.ZstdDecompressor().decompress(data)
    raise ValueError(codec)


def build_batch(codec, records, base_timestamp):
    body = b"".join(
        msgpack.packb([i, t - base_timestamp, k, v, [[hn, hv] for hn, hv in h]], use_bin_type=True)
        for i, (k, v, h, t) in enumerate(records)
    )
    count = len(records)
    if codec == "none":
        tail = b"\xdd" + struct.pack(">I", count) + body
    else:
        payload = compress(codec, body)
        tail = b"\xc6" + struct.pack(">I", len(payload)) + payload
    max_timestamp = max(t for (_, _, _, t) in records)
    after_crc = (
        b"\xcd" + struct.pack(">H", CODECS[codec])
        + b"\xce" + struct.pack(">I", count - 1)
        + b"\xd3" + struct.pack(">q", base_timestamp)
        + b"\xd3" + struct.pack(">q", max_timestamp)
        + b"\xd3" + struct.pack(">q", -1)
        + b"\xd1" + struct.pack(">h", -1)
        + b"\xd2" + struct.pack(">i", -1)
        + b"\xce" + struct.pack(">I", count)
        + tail
    )
    batch_length = 5 + 1 + 5 + len(after_crc)  # epoch, magic, crc, the rest
    return (
        b"\x9e" + b"\xcf" + struct.pack(">Q", 0)
        + b"\xce" + struct.pack(">I", batch_length)
        + b"\xd2" + struct.pack(">i", -1)
        + b"\x02"
        + b"\xce" + struct.pack(">I", crc32c(after_crc))
        + after_crc
    )


def read_records(codec_seen, batch):
    element = batch[13]
    if isinstance(element, bytes):
        raw = decompress(codec_seen, element)
        unpacker = msgpack.Unpacker(raw=False)
        unpacker.feed(raw)
        return list(unpacker)
    return element


def main():
    base, topic, codec = sys.argv[1], sys.argv[2], sys.argv[3]
    records = [(b"k%d" % i, b'{"n": %d, "msg": "from python %s"}' % (i, codec.encode()), [("lang", b"py")], 1700000000000 + i) for i in range(25)]
    batch = build_batch(codec, records, 1700000000000)
    with httpx.Client(http1=False, http2=True) as c:
        r = c.post(
            base + "/v1/topics/%s/partitions/0/records" % topic,
            content=batch,
            headers={"content-type": "application/vnd.sluice.batches", "accept": "application/json"},
        )
        r.raise_for_status()
        base_offset = r.json()["baseOffset"]
        url = base + "/v1/topics/%s/partitions/0/records?offset=%d" % (topic, base_offset)
        stored = msgpack.unpackb(
            c.get(url, headers={"accept": "application/vnd.msgpack", "sluice-accept-compression": "gzip,lz4,zstd"}).content
        )["batches"][0]
        plain = msgpack.unpackb(c.get(url, headers={"accept": "application/vnd.msgpack"}).content)["batches"][0]
        as_json = c.get(url, headers={"accept": "application/json"}).json()["records"]
    stored_records = read_records(codec, stored)
    print(json.dumps({
        "storedCodec": stored[5] & 7,
        "plainCodec": plain[5] & 7,
        "storedValues": [r[3].decode() for r in stored_records],
        "plainValues": [r[3].decode() for r in plain[13]],
        "jsonValues": [r["value"] for r in as_json[:25]],
        "sent": [v.decode() for (_, v, _, _) in records],
    }))


main()
