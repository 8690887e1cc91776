"""What recording a live session costs the live path, with and without a :class:`RecordedSequencer`
writing the session file:

1. per websocket frame, the stream's own work (parse the frame, feed the sequencer), in-process;
2. the whole source (socket, parse, sequence, hand-over to the dataflow) against the OKX simulator
   serving the tape as fast as it can: frames per second delivered.

    .venv/bin/python bench/bench_recording.py [--repeat 5]

Frames: one ``trades`` push per trade of the BTC-USDT tape (19,904 trades, the simulator's shape),
each received 50 ms after its trade time. Best of ``--repeat`` runs each; prints a Markdown table and
the session file's size.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectors.okx.parser import parse_frame  # noqa: E402
from connectors.okx.recording import RecordedSequencer, SessionRecorder, SessionRecording  # noqa: E402
from connectors.okx.source import OkxTradesSource  # noqa: E402
from market.sequencing import Latest, Limits, Push, Sequencer, Start, Subscribed  # noqa: E402
from market.types import Trade, utc_from_ms  # noqa: E402

BTC = ROOT / "tests/data/tapes/BTC-USDT-2024-08-08T2354Z_2024-08-09T0005Z.csv"
LIMITS = Limits()


def frames() -> tuple[list[tuple[bytes, datetime]], int]:
    """The tape as pushes with their receive times, and the id before the first."""
    with BTC.open() as handle:
        rows = list(csv.DictReader(handle))
    out = []
    for row in rows:
        item = {
            "instId": row["instrument_name"],
            "tradeId": row["trade_id"],
            "px": row["price"],
            "sz": row["size"],
            "side": row["side"],
            "ts": row["created_time"],
            "count": "1",
            "source": "0",
        }
        raw = orjson.dumps({"arg": {"channel": "trades", "instId": "BTC-USDT"}, "data": [item]})
        out.append((raw, utc_from_ms(int(row["created_time"]) + 50)))
    return out, int(rows[0]["trade_id"]) - 1


def run(sequencer: Sequencer, pushes: list[tuple[bytes, datetime]], before: int) -> float:
    """Seconds spent per frame: parse + feed, as ``TradeStream._on_frame`` does."""
    start = pushes[0][1] - timedelta(seconds=1)
    sequencer.feed(Start(start))
    sequencer.feed(Subscribed("BTC-USDT", start))
    anchor = Trade(
        "okx", "BTC-USDT", before, Decimal(1), Decimal(1), "buy", start - timedelta(seconds=1), start
    )
    sequencer.feed(Latest("BTC-USDT", (anchor,), None, start))
    began = time.perf_counter()
    for raw, now in pushes:
        parsed = parse_frame(raw, now)
        assert isinstance(parsed, list)
        sequencer.feed(Push(tuple(parsed), raw, now))
    return (time.perf_counter() - began) / len(pushes)


def source_rate(pushes: int, before: int, last: int, recording: SessionRecording | None) -> float:
    """Frames per second the live source delivers from the simulator replaying as fast as it can."""
    command = [
        sys.executable,
        "-m",
        "connectors.okx.simulator",
        "--tape",
        str(BTC),
        "--port=0",
        "--speed=0",
        "--wait-for-subscriber",
    ]
    simulator = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert simulator.stdout is not None
        ready = json.loads(simulator.stdout.readline())
        wide = timedelta(days=36500)  # the tape's own (2024) times
        source = OkxTradesSource(
            ready["ws_public"],
            ready["rest"],
            ["BTC-USDT"],
            start_after={"BTC-USDT": before},
            end_trade_ids={"BTC-USDT": last},
            future_tolerance=wide,
            max_behind=wide,
            recording=recording,
        )
        partition = source.build_part("bench", "BTC-USDT", None)
        began = time.perf_counter()
        try:
            while True:
                if not partition.next_batch():
                    time.sleep(0.001)
        except StopIteration:
            elapsed = time.perf_counter() - began
        finally:
            partition.close()
    finally:
        simulator.terminate()
        simulator.wait()
    return pushes / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    pushes, before = frames()
    plain, recorded, size = [], [], 0
    with tempfile.TemporaryDirectory() as directory:
        for attempt in range(args.repeat):
            plain.append(run(Sequencer("okx", ["BTC-USDT"], LIMITS), pushes, before))
            recording = SessionRecording(Path(directory), session=f"bench-{attempt}")
            recorder = SessionRecorder(recording, "BTC-USDT")
            recorded.append(run(RecordedSequencer(recorder, "okx", ["BTC-USDT"], LIMITS), pushes, before))
            recorder.close()
            size = sum(p.stat().st_size for p in (Path(directory) / recording.session).iterdir())
        last = before + len(pushes)
        rates = [source_rate(len(pushes), before, last, None) for _ in range(args.repeat)]
        recorded_rates = [
            source_rate(len(pushes), before, last, SessionRecording(Path(directory), session=f"source-{i}"))
            for i in range(args.repeat)
        ]
    raw_bytes = sum(len(raw) for raw, _ in pushes)
    best_plain, best_recorded = min(plain) * 1e6, min(recorded) * 1e6
    print(
        f"Machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}; "
        f"{len(pushes):,} frames, best of {args.repeat}\n"
    )
    print("| path | us per frame |\n|---|---|")
    print(f"| parse + sequence (live, not recording) | {best_plain:.1f} |")
    print(f"| parse + sequence + record | {best_recorded:.1f} |")
    print(
        f"| recording's share | {best_recorded - best_plain:.1f} ({(best_recorded / best_plain - 1):.0%}) |"
    )
    print(f"\n| the source from the simulator | frames/s |\n|---|---|\n| not recording | {max(rates):,.0f} |")
    print(f"| recording | {max(recorded_rates):,.0f} |")
    per_frame = size / len(pushes)
    print(f"\nsession file: {size:,} bytes for {raw_bytes:,} bytes of frames ({per_frame:.1f} per frame)")


if __name__ == "__main__":
    main()
