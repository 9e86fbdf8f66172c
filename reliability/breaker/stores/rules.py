"""The Redis store's Lua scripts, in Python, for stores that run them inside a locked transaction.

:mod:`reliability.breaker.stores.redis` decides every breaker operation in one Lua script
(``lua/prelude.lua`` + ``record``/``acquire``/``release``/``command``). The database store runs the
*same* operations with the *same* arguments and replies, but in Python, on the breaker's row loaded
under a lock (:func:`execute`). This module is a line-by-line port of those scripts: keep the two in
step (``tests/reliability/breaker/stores/test_rules.py`` runs both on the same inputs and compares them).

The state is a dict with the Redis hash's fields, as native values::

    st ep inc ou tr cf hs wt wf ws wi wk   as in the Lua prelude (ints, strings)
    wr   count window ring: a string of outcome digits "0" (empty) .. "4"
    wb   time window buckets: [[second, calls, failures, slow], ...]
    pl   half-open leases: {token: deadline_ms}
    src  (database only) the primary store's view this state was last seeded from, "inc:epoch"
    ho   (database only) "1" once a reconciling process has claimed the window since that seed

Two operations exist only here, for the database store's role as the Redis store's fallback:

    seed      ARGV[NARGS + 1] view id ("inc:epoch" of the Redis view), [+2] state, [+3] open remaining
              ms (-1 none, -2 indefinite), [+4] trips, [+5] consecutive failures. Adopts the Redis view
              unless an equal or newer view was already adopted (several processes fall back at
              once). kind "sync".
    handover  no extra arguments. The first caller since the last seed claims the window (returned
              as a ``record`` payload in ``payload``; ``extra`` = 1), so N processes reconciling
              into Redis push the shared window once, not N times. kind "handover".
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from typing import Any

from reliability.breaker.knobs import NARGS as N
from reliability.breaker.knobs import decode_store_args
from reliability.breaker.machine import State

__all__ = ["OVERRIDES", "RECORDING", "ScriptResult", "execute"]

HINT_MS = 1000
RECORDING = ("closed", "metrics_only")
OVERRIDES = ("forced_open", "disabled", "metrics_only")

#: (kind, state, epoch, inc, open_remaining_ms, now_ms, consecutive, calls, failures, slow, trips,
#: leases, extra, events, payload) - the fields of the Redis store's script reply.
ScriptResult = tuple[
    str,
    State,
    int,
    str,
    int,
    int,
    int,
    int,
    int,
    int,
    int,
    int,
    int,
    tuple[tuple[str, str, str, float, float, int, int], ...],
    str,
]


class _Script:
    """One script run: the prelude's locals and helpers as attributes and methods."""

    def __init__(self, h: dict[str, Any], args: Sequence[str], now: int) -> None:
        self.h = h
        # The config arguments, as knobs.STORE_ARGS declares them (the Lua prelude's locals).
        knob = decode_store_args(args)
        self.FT: int = knob["FT"]
        self.REC: float = knob["REC"]
        self.ST: int = knob["ST"]
        self.W: int = knob["W"]
        self.MINR: int = knob["MINR"]
        self.WTYPE: str = knob["WTYPE"]
        self.FRT: float = knob["FRT"]
        self.SRT: float = knob["SRT"]
        self.HOM: int = knob["HOM"]
        self.HOW: float = knob["HOW"]
        self.MULT: float = knob["MULT"]
        self.CAP: float = knob["CAP"]
        self.now = now
        self.now_sec = now // 1000
        self.st: str = h.get("st", "closed")
        self.ep: int = int(h.get("ep", 0))
        self.inc: str = h.get("inc", "")
        self.ou: int = int(h.get("ou", -1))
        self.tr: int = int(h.get("tr", 0))
        self.cf: int = int(h.get("cf", 0))
        self.hs: int = int(h.get("hs", 0))
        self.wt: int = int(h.get("wt", 0))
        self.wf: int = int(h.get("wf", 0))
        self.ws: int = int(h.get("ws", 0))
        self.wi: int = int(h.get("wi", 0))
        self.wk: str = h.get("wk", "")
        self.sig = f"{self.WTYPE}:{self.W}"
        self.dirty = False
        self.ring: list[int] | None = None
        self.ring_dirty = False
        self.buckets: list[list[int]] | None = None
        self.leases: dict[str, int] | None = None
        self.events: list[tuple[str, str, str, float, float, int, int]] = []
        if self.wk != self.sig:
            if "st" in h:
                self.reset_window()
            else:
                self.wk = self.sig
        elif self.WTYPE == "time":
            self.load_buckets()

    # -- prelude ----------------------------------------------------------------------------------

    def get_leases(self) -> dict[str, int]:
        if self.leases is None:
            pl = self.h.get("pl")
            self.leases = dict(pl) if self.st == "half_open" and pl else {}
        return self.leases

    def reset_window(self) -> None:
        self.wt = self.wf = self.ws = self.wi = 0
        self.wk = self.sig
        self.ring = [0] * self.W if self.WTYPE == "count" else []
        self.buckets = []
        self.ring_dirty = True
        self.dirty = True

    def load_ring(self) -> list[int]:
        if self.ring is None:
            s = self.h.get("wr", "")
            self.ring = [int(c) for c in s] if len(s) == self.W else [0] * self.W
        return self.ring

    def load_buckets(self) -> list[list[int]]:
        if self.buckets is None:
            buckets = []
            for b in self.h.get("wb") or []:
                if b[0] > self.now_sec - self.W:
                    buckets.append(list(b))
                else:
                    self.wt, self.wf, self.ws = self.wt - b[1], self.wf - b[2], self.ws - b[3]
                    self.dirty = True
            self.buckets = buckets
        return self.buckets

    def _last_bucket(self) -> list[int]:
        buckets = self.load_buckets()
        if not buckets or buckets[-1][0] < self.now_sec:
            buckets.append([self.now_sec, 0, 0, 0])
        return buckets[-1]

    def add(self, code: int, n: int) -> None:
        fail = 1 if code % 2 == 0 else 0
        slow = 1 if code >= 3 else 0
        if self.WTYPE == "count":
            ring = self.load_ring()
            i = self.wi
            old = ring[i]
            if old > 0:
                self.wt -= 1
                if old % 2 == 0:
                    self.wf -= 1
                if old >= 3:
                    self.ws -= 1
            ring[i] = code
            self.ring_dirty = True
            self.wi = (i + 1) % self.W
        else:
            last = self._last_bucket()
            last[1] += n
            last[2] += fail * n
            last[3] += slow * n
        self.wt, self.wf, self.ws = self.wt + n, self.wf + fail * n, self.ws + slow * n
        self.cf = self.cf + n if fail else 0
        self.dirty = True

    def trip_reason(self) -> str | None:
        if self.FT > 0 and self.cf >= self.FT:
            return "consecutive_failures"
        if self.wt >= self.MINR:
            if self.wf * 100.0 >= self.FRT * self.wt:
                return "failure_rate"
            if self.ws * 100.0 >= self.SRT * self.wt:
                return "slow_call_rate"
        return None

    def rates(self) -> tuple[float, float]:
        if self.wt <= 0:
            return 0.0, 0.0
        return round(100.0 * self.wf / self.wt, 6), round(100.0 * self.ws / self.wt, 6)

    def transition(self, to: str, reason: str) -> None:
        fr, sr = self.rates()
        # ou: when OPEN / FORCED_OPEN ends, or when a timed DISABLED / METRICS_ONLY ends (-1: no end)
        open_until = -1
        if to not in ("closed", "half_open"):
            open_until = self.ou
        else:
            self.ou = -1
        self.events.append((self.st, to, reason, fr, sr, self.now, open_until))
        self.st = to
        self.ep += 1
        self.cf = self.hs = 0
        self.leases = {}
        self.reset_window()

    def open_ms(self, trips: int) -> int:
        d = self.REC
        if self.MULT != 1.0 and trips > 1:
            try:
                d = self.REC * self.MULT ** (trips - 1)
            except OverflowError:
                d = self.CAP
        d = min(d, self.CAP)
        return math.floor(d * 1000 + 0.5)

    def trip(self, reason: str) -> None:
        self.tr += 1
        self.ou = self.now + self.open_ms(self.tr)
        self.transition("open", reason)

    def success_run(self, n: int) -> bool:
        """A run of fast successes in a count window (only reaching minimum_requests can trip)."""
        ring = self.load_ring()
        wi, wt, wf, ws = self.wi, self.wt, self.wf, self.ws
        W, MINR = self.W, self.MINR
        for _ in range(n):
            i = wi
            old = ring[i]
            ring[i] = 1
            wi = (i + 1) % W
            if old == 0:
                wt += 1
                if wt == MINR:
                    self.wi, self.wt, self.wf, self.ws, self.cf = wi, wt, wf, ws, 0
                    reason = self.trip_reason()
                    if reason:
                        if self.st == "closed":
                            self.trip(reason)
                            return False
                        self.transition("metrics_only", "would_trip:" + reason)
                        ring = self.load_ring()  # the transition started a fresh window
                        wi, wt, wf, ws = 0, 0, 0, 0
            elif old != 1:
                if old in (2, 4):
                    wf -= 1
                if old >= 3:
                    ws -= 1
        self.wi, self.wt, self.wf, self.ws, self.cf = wi, wt, wf, ws, 0
        self.ring_dirty = self.dirty = True
        return True

    def apply_run(self, code: int, n: int) -> bool:
        if self.st not in RECORDING:
            return False
        if code == 1:
            if self.WTYPE == "count":
                return self.success_run(n)
            if self.wt >= self.MINR or self.wt + n < self.MINR:
                self.add(code, n)
                return True
        for _ in range(n):
            self.add(code, 1)
            reason = self.trip_reason()
            if reason:
                if self.st == "closed":
                    self.trip(reason)
                    return False
                self.transition("metrics_only", "would_trip:" + reason)
        return True

    def apply_aggregate(self, calls: int, failures: int, slow: int) -> None:
        if self.st not in RECORDING or calls <= 0:
            return
        last = self._last_bucket()
        last[1] += calls
        last[2] += failures
        last[3] += slow
        self.wt, self.wf, self.ws = self.wt + calls, self.wf + failures, self.ws + slow
        self.dirty = True
        reason = self.trip_reason()
        if reason:
            if self.st == "closed":
                self.trip(reason)
            else:
                self.transition("metrics_only", "would_trip:" + reason)

    def expire_probes(self) -> bool:
        if self.st != "half_open":
            return False
        for deadline in self.get_leases().values():
            if deadline <= self.now:
                self.trip("probe_timeout")
                return True
        return False

    def end_overrides(self) -> None:
        """A timed staff override whose time is up ends here, whichever script runs first."""
        if self.ou < 0 or self.now < self.ou:
            return
        if self.st == "forced_open":
            self.transition("half_open", "forced_open_expired")
        elif self.st in ("disabled", "metrics_only"):
            self.transition("closed", self.st + "_expired")

    def save(self) -> dict[str, Any] | None:
        """The new state, or ``None`` when nothing changed."""
        if not self.dirty:
            return None
        if self.inc == "":
            self.inc = f"{self.now}.{uuid.uuid4().hex[:8]}"
        h = dict(self.h)
        h.update(
            st=self.st,
            ep=self.ep,
            inc=self.inc,
            ou=self.ou,
            tr=self.tr,
            cf=self.cf,
            hs=self.hs,
            wt=self.wt,
            wf=self.wf,
            ws=self.ws,
            wi=self.wi,
            wk=self.wk,
            pl=self.get_leases(),
        )
        if self.WTYPE == "count":
            if self.ring_dirty:
                h["wr"] = "".join(map(str, self.load_ring()))
            h.pop("wb", None)
        elif self.buckets is not None:
            h["wb"] = self.buckets
            h.pop("wr", None)
        return h

    def result(self, kind: str, extra: int, payload: str = "") -> ScriptResult:
        remaining = -1
        if self.st in ("open", "forced_open"):
            remaining = max(0, self.ou - self.now) if self.ou >= 0 else -2
        elif self.ou >= 0 and self.st in OVERRIDES:
            remaining = max(0, self.ou - self.now)  # time left of a timed DISABLED / METRICS_ONLY
        n = len(self.get_leases()) if self.st == "half_open" else 0
        return (
            kind,
            State(self.st),
            self.ep,
            self.inc,
            remaining,
            self.now,
            self.cf,
            self.wt,
            self.wf,
            self.ws,
            self.tr,
            n,
            extra,
            tuple(self.events),
            payload,
        )

    # -- scripts ----------------------------------------------------------------------------------

    def record(self, args: Sequence[str]) -> ScriptResult:
        lost = args[N] != "" and args[N] != self.inc
        # The caller knew a state that is gone (row deleted): this call recreates it, and its
        # caller alone reports the inferred transition (extra = 1).
        noticed = 0
        if lost and "st" not in self.h:
            noticed = 1
            self.dirty = True
        self.expire_probes()
        self.end_overrides()
        force = args[N + 1] == "-1" or lost
        if args[N + 2] != "" and (force or int(args[N + 1]) == self.ep):
            for entry in args[N + 2].split(","):
                if entry.startswith("a"):
                    _, c, f, s = entry.split(":")
                    self.apply_aggregate(int(c), int(f), int(s))
                else:
                    code, n = entry.split(":")
                    if not self.apply_run(int(code), int(n)):
                        break
        hint = int(args[N + 3])
        if force and hint >= 0:
            if self.st == "closed":
                self.tr += 1
                self.ou = self.now + hint
                self.transition("open", "fallback_open_reconciled")
            elif self.st == "open" and self.now + hint > self.ou:
                self.ou = self.now + hint
                self.dirty = True
        # args[N + 4] (optional): the caller saw a staff force-open (ms left, -2 without end, -1 none);
        # if the state was lost, the force is re-asserted at once.
        forced = int(args[N + 4]) if len(args) > N + 4 else -1
        if lost and forced != -1 and self.st == "closed":
            self.ou = self.now + forced if forced >= 0 else -1
            self.transition("forced_open", "forced_open re-asserted: shared state lost")
        return self.result("sync", noticed)

    def acquire(self, args: Sequence[str]) -> ScriptResult:
        self.expire_probes()
        if self.st == "open" and self.now >= self.ou:
            self.transition("half_open", "recovery_timeout_elapsed")
        self.end_overrides()
        kind, extra = "pass", 0
        if self.st == "half_open":
            leases = self.get_leases()
            if len(leases) < self.HOM:
                leases[args[N]] = self.now + math.floor(self.HOW * 1000 + 0.5)
                self.dirty = True
                kind = "probe"
            else:
                kind, extra = "reject", min(min(leases.values()) - self.now, HINT_MS)
        elif self.st == "open":
            kind, extra = "reject", self.ou - self.now
        elif self.st == "forced_open":
            kind = "reject"
            extra = self.ou - self.now if self.ou >= 0 else math.floor(self.REC * 1000)
        return self.result(kind, extra)

    def release(self, args: Sequence[str]) -> ScriptResult:
        token, code = args[N], int(args[N + 1])
        kind = "stale"
        held = self.st == "half_open" and token in self.get_leases()
        if held and not self.expire_probes():
            kind = "released"
            del self.get_leases()[token]
            self.dirty = True
            if code in (2, 4):
                self.trip("probe_failed")
            elif code == 3:
                self.trip("probe_slow")
            elif code == 1:
                self.hs += 1
                if self.hs >= self.ST:
                    self.tr = 0
                    self.transition("closed", "probes_succeeded")
        return self.result(kind, 0)

    def command(self, args: Sequence[str]) -> ScriptResult:
        self.end_overrides()
        op, reason, dur = args[N], args[N + 1], int(args[N + 2])
        if op in ("reset", "force_close"):
            self.tr = 0
            self.transition("closed", reason)
        elif op == "force_open":
            self.ou = self.now + dur if dur >= 0 else -1
            self.transition("forced_open", reason)
        elif op in ("disable", "metrics_only"):
            self.ou = self.now + dur if dur >= 0 else -1
            self.transition("disabled" if op == "disable" else "metrics_only", reason)
        else:
            raise ValueError(f"unknown breaker command {op}")
        return self.result("done", 0)

    def seed(self, args: Sequence[str]) -> ScriptResult:
        view, state, remaining = args[N], args[N + 1], int(args[N + 2])
        trips, consecutive = int(args[N + 3]), int(args[N + 4])
        if _newer_view(view, self.h.get("src", "")):
            self.h["src"] = view
            self.h.pop("ho", None)
            self.dirty = True
            if state in ("open", *OVERRIDES):
                self.ou = self.now + remaining if remaining >= 0 else -1
            if state != self.st or state in ("open", *OVERRIDES):
                self.transition(state, "adopted_from_redis")
            else:
                self.reset_window()
            self.tr = trips
            if self.st in RECORDING:
                self.cf = consecutive
        return self.result("sync", 0)

    def handover(self, args: Sequence[str]) -> ScriptResult:
        self.expire_probes()
        if self.h.get("ho") == "1":
            return self.result("handover", 0)
        self.h["ho"] = "1"
        self.dirty = True
        payload = ""
        if self.st in RECORDING and self.wt > 0:
            if self.WTYPE == "count":
                ring, wi = self.load_ring(), self.wi
                codes = [c for c in ring[wi:] + ring[:wi] if c]
                runs: list[list[int]] = []
                for c in codes:
                    if runs and runs[-1][0] == c:
                        runs[-1][1] += 1
                    else:
                        runs.append([c, 1])
                payload = ",".join(f"{c}:{n}" for c, n in runs)
            else:
                payload = f"a:{self.wt}:{self.wf}:{self.ws}"
        return self.result("handover", 1, payload)


def _newer_view(view: str, seen: str) -> bool:
    """True when ``view`` ("inc:epoch") is another incarnation than ``seen`` or a later epoch of it."""
    if not seen:
        return True
    inc, _, epoch = view.rpartition(":")
    seen_inc, _, seen_epoch = seen.rpartition(":")
    if inc != seen_inc:
        return True
    try:
        return int(epoch) > int(seen_epoch)
    except ValueError:
        return True


_SCRIPTS = {
    "record": _Script.record,
    "acquire": _Script.acquire,
    "release": _Script.release,
    "command": _Script.command,
    "seed": _Script.seed,
    "handover": _Script.handover,
}


def execute(
    script: str, h: dict[str, Any], args: Sequence[str], now_ms: int
) -> tuple[ScriptResult, dict[str, Any] | None]:
    """Run ``script`` on state ``h`` at ``now_ms``; return the reply and the new state (None: unchanged)."""
    run = _Script(h, args, now_ms)
    reply = _SCRIPTS[script](run, args)
    return reply, run.save()
