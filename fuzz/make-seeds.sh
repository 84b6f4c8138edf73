#!/usr/bin/env bash
# Regenerates fuzz/seeds/<target>/ from the golden inputs of crates/ekko-gateway/tests/data
# (real frames and requests from the Traccar test suite, Munic's CloudConnect examples), so
# each fuzz target starts from inputs its decoder accepts. Hex fixtures become binary files.
# The seeds are committed; rerun this after changing the golden data:
#
#   bash fuzz/make-seeds.sh
set -euo pipefail
cd "$(dirname "$0")"
rm -rf seeds
python3 - <<'PY'
import json, os, struct

DATA = "../crates/ekko-gateway/tests/data"
IMEI = b"359881234567899"


def put(target, name, data):
    os.makedirs(f"seeds/{target}", exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(f"seeds/{target}/{name}", "wb") as f:
        f.write(data)


# OsmAnd: query strings (without the leading "/?") and JSON bodies.
for s in json.load(open(f"{DATA}/osmand.json"))["samples"]:
    if "query" in s:
        q = s["query"]
        put("osmand_query", s["name"], q.split("?", 1)[1] if "?" in q else q)
    if "body" in s:
        put("osmand_json", s["name"], s["body"])

# Teltonika: TCP frames as sent; their data fields (codec id .. N2) alone; the same data
# fields as UDP datagrams; the IMEI handshake.
frames = [(f["name"], bytes.fromhex(f["hex"])) for f in json.load(open(f"{DATA}/teltonika.json"))["frames"]]
for name, frame in frames:
    (length,) = struct.unpack(">I", frame[4:8])
    data = frame[8 : 8 + length]
    put("teltonika_tcp", name, frame)
    put("teltonika_records", name, data)
    body = struct.pack(">HBBH", 0xCAFE, 1, 7, len(IMEI)) + IMEI + data
    put("teltonika_udp", name, struct.pack(">H", len(body)) + body)
# Two frames back to back, as one TCP read may carry them.
small = sorted(frames, key=lambda f: len(f[1]))
put("teltonika_tcp", "two-frames", small[0][1] + small[1][1])
put("teltonika_imei", "imei-15", struct.pack(">H", len(IMEI)) + IMEI)
put("teltonika_imei", "imei-8", struct.pack(">H", 8) + b"12345678")

# CloudConnect webhook bodies.
for f in sorted(os.listdir(f"{DATA}/cloudconnect")):
    put("cloudconnect", f.removesuffix(".json"), open(f"{DATA}/cloudconnect/{f}", "rb").read())

# MQTT payloads (the forms mqtt::decode documents; there is no golden file for them).
put("mqtt", "one-record", '{"recorded_at": "2024-05-01T12:00:00.123Z", "lat": 48.85837, "lng": 2.294481, '
    '"fields": {"GPS_SPEED": 21600, "DIO_IGNITION": true, "GPRMC_VALID": "A", "X_TEMP": 21.5}}')
put("mqtt", "array", '[{"recorded_at": 1714564790000}, {"lat": 1, "lon": 2}, {"lat": null, "lng": null, "fields": null}]')
put("mqtt", "topic", "devices/359881234567899/tracks")
PY
for d in seeds/*/; do printf '%s: %s seeds\n' "$(basename "$d")" "$(ls "$d" | wc -l)"; done
