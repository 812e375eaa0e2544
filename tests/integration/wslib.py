"""A small RFC 6455 client (stdlib only) for nornd's /ws: handshake, masked
frames out, frames in (answering pings), and raw access for hostile tests."""
import base64
import hashlib
import json
import os
import socket
import struct
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WsClosed(Exception):
    def __init__(self, code, reason):
        super().__init__(f"closed by server: {code} {reason!r}")
        self.code, self.reason = code, reason


class WsRefused(Exception):
    def __init__(self, status, body):
        super().__init__(f"upgrade refused: {status} {body!r}")
        self.status, self.body = status, body


class WsClient:
    def __init__(self, port, path="/ws", token=None, headers=None, rcvbuf=None, timeout=10.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            # Before connect: a small window makes "does not read" bite at once.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""
        self.closed = None
        key = base64.b64encode(os.urandom(16))
        # Host as a local non-browser client sends it, unless headers say otherwise.
        host = [] if any(k.lower() == "host" for k in (headers or {})) else ["Host: 127.0.0.1"]
        lines = [f"GET {path} HTTP/1.1"] + host + ["Upgrade: websocket", "Connection: Upgrade",
                                                   "Sec-WebSocket-Key: " + key.decode(), "Sec-WebSocket-Version: 13"]
        if token is not None:
            lines.append(f"Authorization: Bearer {token}")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise WsRefused(None, self.buf)
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status != 101:
            length = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
            while length and len(self.buf) < length[0]:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                self.buf += chunk
            self.sock.close()
            try:
                body = json.loads(self.buf)
            except ValueError:
                body = self.buf
            raise WsRefused(status, body)
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        assert b"sec-websocket-accept: " + accept.lower() in head.lower(), head

    # --- sending ---

    def send_frame(self, opcode, payload, fin=True, mask=True, declared_len=None):
        n = len(payload) if declared_len is None else declared_len
        head = bytes([(0x80 if fin else 0) | opcode])
        m = 0x80 if mask else 0
        if n < 126:
            head += bytes([m | n])
        elif n < 65536:
            head += bytes([m | 126]) + struct.pack("!H", n)
        else:
            head += bytes([m | 127]) + struct.pack("!Q", n)
        if mask:
            key = os.urandom(4)
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
            head += key
        self.sock.sendall(head + payload)

    def send_text(self, text):
        self.send_frame(1, text.encode() if isinstance(text, str) else text)

    def send_json(self, obj):
        self.send_text(json.dumps(obj))

    def close(self):
        try:
            self.send_frame(8, struct.pack("!H", 1000))
        except OSError:
            pass
        self.sock.close()

    # --- receiving ---

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk

    def recv_frame(self):
        """(opcode, payload) of the next frame, server frames are unmasked."""
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        n, off = b1 & 0x7f, 2
        if n == 126:
            self._need(4)
            n, off = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10)
            n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
        self._need(off + n)
        payload, self.buf = self.buf[off:off + n], self.buf[off + n:]
        return b0 & 0x0f, payload

    def recv(self, timeout=10.0):
        """Next message as JSON; answers pings; raises WsClosed on a close
        frame, socket.timeout when nothing comes."""
        self.sock.settimeout(timeout)
        while True:
            op, payload = self.recv_frame()
            if op == 9:
                self.send_frame(10, payload)
            elif op == 8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                self.closed = (code, payload[2:].decode(errors="replace"))
                raise WsClosed(*self.closed)
            elif op == 1:
                return json.loads(payload)
            elif op != 10:
                raise AssertionError(f"unexpected opcode {op}")

    def recv_until(self, predicate, timeout=60.0):
        """Messages up to and including the first one predicate accepts."""
        deadline = time.monotonic() + timeout
        out = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out; last messages: {out[-5:]!r}")
            out.append(self.recv(timeout=left))
            if predicate(out[-1]):
                return out

    def expect_close(self, timeout=10.0):
        """Reads until the server closes: (code, reason, messages before)."""
        msgs = []
        try:
            while True:
                msgs.append(self.recv(timeout=timeout))
        except WsClosed as e:
            return e.code, e.reason, msgs
        except (EOFError, ConnectionResetError):
            return None, None, msgs


def ws_connect(port, query="", **kw):
    return WsClient(port, "/ws" + (("?" + query) if query else ""), **kw)
