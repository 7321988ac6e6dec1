"""Catches mail on port 1025 and lists it the way Mailpit's API does, on port 8025.

Only what `make deploy-check` reads: GET /api/v1/messages (newest first, with ID, From, To,
Subject), GET /api/v1/message/<ID>/raw, GET /readyz. Messages are kept in memory.
"""

from __future__ import annotations

import json
import threading
import uuid
from email import message_from_bytes, policy
from email.utils import getaddresses
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

LOCK = threading.Lock()
MESSAGES: list[dict[str, Any]] = []


class Catch:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        parsed = message_from_bytes(raw, policy=policy.default)
        entry = {
            "ID": uuid.uuid4().hex,
            "From": {"Address": envelope.mail_from},
            "To": [{"Address": a} for a in envelope.rcpt_tos],
            "Subject": str(parsed.get("Subject", "")),
            "MessageID": str(parsed.get("Message-ID", "")).strip("<>"),
            "Headers-To": [a for _, a in getaddresses([str(parsed.get("To", ""))])],
            "raw": raw,
        }
        with LOCK:
            MESSAGES.append(entry)
        return "250 OK"


class Api(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/readyz":
            return self._send(200, b"ok", "text/plain")
        with LOCK:
            found = list(reversed(MESSAGES))
        if self.path.split("?")[0] == "/api/v1/messages":
            listed = [{k: v for k, v in m.items() if k != "raw"} for m in found]
            body = json.dumps({"total": len(listed), "count": len(listed), "messages": listed})
            return self._send(200, body.encode(), "application/json")
        parts = self.path.strip("/").split("/")
        if len(parts) == 5 and parts[:3] == ["api", "v1", "message"] and parts[4] == "raw":
            for m in found:
                if m["ID"] == parts[3]:
                    return self._send(200, m["raw"], "message/rfc822")
        return self._send(404, b"not found", "text/plain")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


if __name__ == "__main__":
    smtp = Controller(Catch(), hostname="0.0.0.0", port=1025, decode_data=False)
    smtp.start()
    ThreadingHTTPServer(("0.0.0.0", 8025), Api).serve_forever()
