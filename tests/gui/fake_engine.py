"""A stand-in engine for protocol tests: speaks the real event protocol, with scripted endings.

usage: fake_engine.py ok|error|die|slow|answer|usererror|badlines|newer
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

from engine.events import EventSink, claim_stdout_for_events


def main(mode: str) -> int:
    if mode == "answer":  # like init/demo/export --json: one JSON document, no events
        print(json.dumps({"project": "/p", "samples": 3}, indent=2))
        return 0
    if mode == "usererror":  # like the CLI on a UserError: message and fix on stderr, exit 2
        print("error: no images found in /data", file=sys.stderr)
        print("  fix: point --images at a folder with one sub-folder per class", file=sys.stderr)
        return 2
    live = claim_stdout_for_events()
    if mode == "newer":  # an engine of a later major protocol version: nothing here is readable
        for line in ({"v": 2, "type": "progress", "done": 1}, {"v": 2, "type": "done", "status": "ok"}):
            live.write(json.dumps(line) + "\n")
        return 0
    sink = EventSink(run_id="fake-run", live=live)
    print("library noise that must not reach the event channel")  # goes to stderr
    sink.log("fake job started")
    if mode == "slow":
        stop = {"requested": False}
        signal.signal(signal.SIGTERM, lambda *_: stop.update(requested=True))
        for step in range(600):
            if stop["requested"]:
                sink.done("cancelled", "stopped by SIGTERM")
                return 130
            sink.progress("train", step, 600, eta_s=600 - step)
            time.sleep(0.05)
    for epoch in range(3):
        sink.progress("train", epoch + 1, 3, eta_s=3 - epoch - 1.0)
        sink.metric("train", {"loss": 1.0 / (epoch + 1), "acc": 0.5 + 0.1 * epoch, "val_acc": 0.4 + 0.1 * epoch},
                    fold=0, epoch=epoch)
    if mode == "badlines":  # malformed and unknown events in the middle of a healthy stream
        for bad in ({"v": 1, "type": ["progress"]}, {"v": 1, "type": "progress", "total": "many"},
                    {"v": 1, "type": "done", "status": "weird"}, {"v": 1, "type": "telepathy"}):
            live.write(json.dumps(bad) + "\n")
        live.flush()
        sink.progress("train", 4, 4)
    if mode == "error":
        sys.stderr.write("Traceback (most recent call last):\n  RuntimeError: boom\n")
        sink.error("the images could not be read", "check the image root")
        sink.done("error", "the images could not be read")
        return 1
    if mode == "die":
        sys.stderr.write("Segmentation fault (simulated)\n")
        sys.stderr.flush()
        os._exit(3)
    sink.result("summary", {"accuracy": 0.9})
    sink.done("ok", "finished")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
