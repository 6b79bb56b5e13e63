"""Child processes that belong to a test run, the demo or a benchmark die with it (stream/process.py): a
killed ``pytest`` used to leave its private brokers and workers running. The broker's side:
tests/stream/test_kafka_broker.py, test_an_owned_broker_stops_when_its_owner_is_killed."""

from __future__ import annotations

import threading

from stream.kafka import find_free_port
from stream.process import stop_with_this_process
from tests.stream.helpers import assert_child_dies_with_owner

# stands in for the worker's command: answers GET /health like a worker that is ready
HEALTHY_SERVER = """
import http.server, json, sys
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"status": "ok"}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json"); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
"""


def test_a_worker_process_stops_when_its_owner_is_killed(tmp_path):
    port = find_free_port()
    ready = tmp_path / "ready"
    owner = (
        "import pathlib, sys\n"
        "from stream.process import WorkerProcess\n"
        f"w = WorkerProcess({{}}, {port}, pathlib.Path({str(tmp_path / 'w.log')!r}), [sys.executable, '-c', {HEALTHY_SERVER!r}, '{port}'])\n"
        "w.start(ready_timeout=60)\n"
        f"pathlib.Path({str(ready)!r}).write_text(str(w.pid))\n"
        "import time; time.sleep(600)\n"
    )
    assert_child_dies_with_owner(owner, ready, "worker", stop_timeout=10)


def test_only_the_main_thread_ties_a_child_to_this_process():
    # the kernel's signal follows the thread that forked the child: from a thread that ends, the child
    # would be stopped with the thread, so no tie is made there
    assert callable(stop_with_this_process())
    found = []
    thread = threading.Thread(target=lambda: found.append(stop_with_this_process()))
    thread.start()
    thread.join()
    assert found == [None]
