"""The embedded broker (kombu's filesystem transport, made atomic) keeps up and loses nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_embedded_filesystem_broker_polls_every_50_ms(tmp_path: Path) -> None:
    # kombu's default is 1 s, slept whenever a worker holds its prefetch limit (~2 tasks/s).
    env = {k: v for k, v in os.environ.items() if k not in ("CELERY_BROKER_URL", "DATABASE_URL", "REDIS_URL")}
    env.update({"HOTELBOT_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "hotelbot.settings"})
    env.pop("CELERY_FILESYSTEM_POLLING_INTERVAL", None)
    code = (
        "import django; django.setup(); from hotelbot.celery import app; "
        "conn = app.connection_for_read(); print(conn.transport_cls, conn.transport.polling_interval)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.split() == ["hotelfs", "0.05"]


_PUBLISHER = """
import sys
from kombu import Connection
import hotelbot.fsbroker
folder, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
opts = {"data_folder_in": folder, "data_folder_out": folder, "control_folder": folder + "/ctl"}
with Connection("hotelfs://", transport_options=opts) as conn:
    q = conn.SimpleQueue("race")
    for i in range(n):
        q.put({"m": f"{tag}-{i}", "pad": "x" * 2_000_000})
"""


@pytest.mark.slow
def test_consumers_never_see_a_half_written_message(tmp_path: Path) -> None:
    # kombu's own transport creates the file, then writes it: a consumer polling meanwhile took
    # an empty or partial file, lost the message and died on JSONDecodeError (kombu issue #1551).
    # Big messages and a consumer that never sleeps open that window wide.
    from kombu import Connection

    import hotelbot.fsbroker  # noqa: F401

    folder = tmp_path / "q"
    (folder / "ctl").mkdir(parents=True)
    per_publisher, publishers = 150, 2
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PUBLISHER, str(folder), f"p{n}", str(per_publisher)], cwd=ROOT
        )
        for n in range(publishers)
    ]
    opts = {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        "control_folder": str(folder / "ctl"),
        "polling_interval": 0,
    }
    seen: list[str] = []
    with Connection("hotelfs://", transport_options=opts) as conn:
        queue = conn.SimpleQueue("race")
        while len(seen) < per_publisher * publishers:
            message = queue.get(timeout=30)  # raises Empty (fails the test) if a message went missing
            seen.append(message.payload["m"])
            message.ack()
    for proc in procs:
        assert proc.wait(timeout=30) == 0
    assert sorted(seen) == sorted(f"p{p}-{i}" for p in range(publishers) for i in range(per_publisher))
    assert not list(folder.glob("*.part")), "no temporary file is left behind"


def test_an_undecodable_message_file_is_set_aside_not_fatal(tmp_path: Path) -> None:
    from queue import Empty

    import pytest
    from kombu import Connection

    import hotelbot.fsbroker  # noqa: F401

    folder = tmp_path / "queue"
    (folder / "ctl").mkdir(parents=True)
    (folder / "1_broken.aside.msg").write_bytes(b"{not json")
    opts = {"data_folder_in": str(folder), "data_folder_out": str(folder), "control_folder": str(folder)}
    with Connection("hotelfs://", transport_options=opts) as conn:
        queue = conn.SimpleQueue("aside")  # kombu keeps declared queues per process: a name of its own
        queue.put({"ok": 1})
        assert queue.get(timeout=5).payload == {"ok": 1}  # the good message behind it still arrives
        with pytest.raises(Empty):
            queue.get(timeout=0.2)
    assert (tmp_path / "corrupt" / "1_broken.aside.msg").read_bytes() == b"{not json"
