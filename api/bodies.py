"""JSON request bodies decoded strictly: ``"amount": "10"`` is refused.

Litestar decodes a body to plain objects, then converts them to the
handler's type with ``strict=False``, which turns the string "10" into the
integer 10 (right for query strings, wrong for a JSON body that can say 10).
This request class decodes the body straight into the handler's struct with
``strict=True``; the signature model then takes the struct as it is. Errors
are reported as Litestar reports them: the field's path, the reason, "body".
"""

from __future__ import annotations

import functools
import re
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import ValidationException
from litestar.types import Empty

#: "Expected `int`, got `str` - at `$.transfers[1].amount`"
_PATH_MARK = " - at `$"
_NAMED_FIELD = re.compile(
    r"^(?P<field>[a-z_][a-z0-9_]*(?:\[\d+\]\.[a-z_][a-z0-9_]*)?): (?P<reason>.+)$"
)


@functools.cache
def _decoder(target: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(target, strict=True)


def _body_type(request: Request[Any, Any, Any]) -> type[Any] | None:
    data = request.route_handler.parsed_fn_signature.parameters.get("data")
    if data is None:
        return None
    target = data.annotation
    # Structs only: other bodies (none today) keep Litestar's decoding.
    return target if isinstance(target, type) and issubclass(target, msgspec.Struct) else None


def validation_error(error: msgspec.ValidationError) -> ValidationException:
    message, _, path = str(error).partition(_PATH_MARK)
    keys = [path.rstrip("`").lstrip(".")]
    # A struct's own check names its field: "effective_at: Expected ...".
    if named := _NAMED_FIELD.match(message):
        keys.append(named["field"])
        message = named["reason"]
    key = ".".join(k for k in keys if k) or "data"
    return ValidationException(
        detail=f"{key}: {message}",
        extra=[{"message": message, "key": key, "source": "body"}],
    )


class StrictRequest(Request[Any, Any, Any]):
    async def json(self) -> Any:
        if self._json is Empty and self._connection_state.json is Empty:
            target: Any = _body_type(self)
            if target is not None:
                body = await self.body()
                try:
                    value = _decoder(target).decode(body or b"null")
                except msgspec.ValidationError as error:
                    raise validation_error(error) from None
                except msgspec.DecodeError:
                    # Not JSON at all: Litestar's own decoding says so.
                    return await super().json()
                self._json = self._connection_state.json = value
        return await super().json()
