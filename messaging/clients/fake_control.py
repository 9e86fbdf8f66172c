"""Control API of our fake Green API (``/__fake__/``), used by ``simulate_guest`` and drills."""

from __future__ import annotations

from typing import Any

from hotelbot.exceptions import ProviderError
from reliability.http import ResilientSession, TransportError


class FakeControlError(ProviderError):
    code = "fake_control_error"


class FakeGreenApiControl:
    def __init__(self, *, base_url: str, timeout: float = 5.0) -> None:
        self._base = base_url.rstrip("/") + "/__fake__"
        self._http = ResilientSession("fake_green_api", connect_timeout=timeout, read_timeout=timeout)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = self._http.request(method, f"{self._base}/{path}", **kwargs)
        except TransportError as e:
            raise FakeControlError(f"the fake Green API at {self._base} is not reachable: {e.message}") from e
        if resp.status != 200:
            raise FakeControlError(f"the fake Green API answered {resp.status}: {resp.text[:200]}")
        return resp.json()

    def inject_inbound(self, *, chat_id: str, text: str, sender_name: str) -> str:
        data = self._call(
            "POST", "inbound", json={"chatId": chat_id, "text": text, "senderName": sender_name}
        )
        return str(data["idMessage"])

    def requests(self, *, method_name: str | None = None) -> list[dict[str, Any]]:
        params = {"method_name": method_name} if method_name else None
        return list(self._call("GET", "requests", params=params))
