"""A real OTLP/HTTP trace receiver for tests and local debugging.

It decodes what an exporter sends to POST /v1/traces (application/x-protobuf, as Kong's
bundled opentelemetry plugin sends it) with the official generated classes of the
OpenTelemetry protocol (PyPI `opentelemetry-proto`): an ExportTraceServiceRequest that does
not parse is answered 400 and kept out of the span list. GET /spans answers every span
decoded so far as JSON (ids in hex, attribute values as plain JSON values, the resource's
attributes beside each span); DELETE /spans forgets them. Only 127.0.0.1 is listened on.

    python otlp-receiver.py [--port N] [--print]
        N = 0 (default): a free port. The first stdout line is `listening <port>`; with
        --print, one JSON line per decoded span follows.
"""
import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

# Bounded: a receiver left running keeps the newest spans only.
MAX_SPANS = 10000
MAX_BODY = 16 * 1024 * 1024

spans = []
requests = {"decoded": 0, "refused": 0}
lock = threading.Lock()
PRINT = False


def any_value(v):
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind)


def attributes(kvs):
    return {kv.key: any_value(kv.value) for kv in kvs}


def decode(body):
    req = ExportTraceServiceRequest()
    req.ParseFromString(body)
    out = []
    for rs in req.resource_spans:
        resource = attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append(
                    {
                        "traceId": s.trace_id.hex(),
                        "spanId": s.span_id.hex(),
                        "parentSpanId": s.parent_span_id.hex(),
                        "name": s.name,
                        "kind": s.kind,
                        "startTimeUnixNano": s.start_time_unix_nano,
                        "endTimeUnixNano": s.end_time_unix_nano,
                        "attributes": attributes(s.attributes),
                        "events": [
                            {"name": e.name, "timeUnixNano": e.time_unix_nano,
                             "attributes": attributes(e.attributes)}
                            for e in s.events
                        ],
                        "status": {"code": s.status.code, "message": s.status.message},
                        "scope": ss.scope.name,
                        "resource": resource,
                    }
                )
    return out


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        if self.path.split("?")[0] != "/v1/traces":
            return self.reply(404, b"not found", "text/plain")
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 or length > MAX_BODY:
            return self.reply(400, b"a body of 1 byte to 16 MiB is expected", "text/plain")
        body = self.rfile.read(length)
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        try:
            if ctype != "application/x-protobuf":
                raise DecodeError("content type " + ctype)
            decoded = decode(body)
        except (DecodeError, ValueError) as e:
            with lock:
                requests["refused"] += 1
            return self.reply(400, ("not an OTLP protobuf trace export: %s" % e).encode(), "text/plain")
        with lock:
            requests["decoded"] += 1
            spans.extend(decoded)
            del spans[:-MAX_SPANS]
        if PRINT:
            for s in decoded:
                print(json.dumps(s), flush=True)
        self.reply(200, ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")

    def do_GET(self):
        if self.path.split("?")[0] != "/spans":
            return self.reply(404, b"not found", "text/plain")
        with lock:
            body = json.dumps({"requests": requests, "spans": spans}).encode()
        self.reply(200, body, "application/json")

    def do_DELETE(self):
        if self.path.split("?")[0] != "/spans":
            return self.reply(404, b"not found", "text/plain")
        with lock:
            spans.clear()
        self.reply(204, b"", "text/plain")


def main():
    p = argparse.ArgumentParser(description="OTLP/HTTP protobuf trace receiver")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--print", action="store_true", help="one JSON line per span on stdout")
    args = p.parse_args()
    global PRINT
    PRINT = args.print
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print("listening %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
