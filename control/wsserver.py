"""uvicorn's WebSocket protocol plus one ASGI extension, `biplane.prepared`: write an already framed message.

Fan-out is the hub's hot path: one job event followed by 1,000 sockets. Server frames are unmasked, so
the frame bytes are the same for every socket: the hub frames an event once and writes it to each
transport synchronously from its dispatch loop, with no task switch, ASGI message or per-socket framing
(the idea of gorilla/websocket's PreparedMessage). Everything else goes through the normal ASGI send.
An app served by another ASGI server sees no extension in the scope and sends the usual way.
"""

from __future__ import annotations

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode

EXTENSION = "biplane.prepared"


def prepare(text: str) -> bytes:
    """A complete, unmasked server text frame (valid with or without permessage-deflate: RSV1 is clear)."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False, extensions=[])


class PreparedWebSocketProtocol(WebSocketsSansIOProtocol):
    """Adds `scope["extensions"]["biplane.prepared"] = {"write": write_prepared}` to every WebSocket scope."""

    async def run_asgi(self) -> None:
        self.scope["extensions"][EXTENSION] = {"write": self.write_prepared}
        await super().run_asgi()

    def write_prepared(self, frame: bytes) -> bool:
        """Write now; False when the socket cannot take it (not open, closing, or its write buffer is past
        the high-water mark), and the caller queues the message for the normal, awaiting send instead."""
        if (
            not self.handshake_complete
            or self.close_sent
            or self.disconnected
            or self.initial_response is not None
            or not self.writable.is_set()
            or self.transport.is_closing()
        ):
            return False
        self.transport.write(frame)
        return True
