"""The WebSocket ``search`` message: ranked scenes across every stream the server knows.

Any connection may search, with or without a session; it shares the question rate limit, since each
search reads every stream's scene records. The reads are Redis calls, so they run in the gateway's
thread pool; the reply is one ``search.result`` (or one ``error`` with the request's ``id``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scenekv.errors import UserError

from . import protocol as P
from .protocol import ProtocolError, encode

if TYPE_CHECKING:
    from .session import Connection


async def handle_search(conn: Connection, msg: P.SearchRequest) -> None:
    if not conn.question_bucket.take():
        raise ProtocolError(
            P.RATE_LIMITED, f"more than {conn.cfg.questions_per_min:g} questions/min", id=msg.id
        )
    try:
        hits = await conn.service.search(msg.text, msg.streams, msg.limit)
    except ProtocolError:
        raise
    except UserError as exc:  # an unknown stream: the error keeps the request's id
        raise ProtocolError(exc.code, str(exc), id=msg.id) from None
    conn.deliver(encode("search.result", id=msg.id, hits=[h.as_dict() for h in hits]))
