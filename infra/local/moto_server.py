"""Runs a moto server on 127.0.0.1 for the local stack and the tests.

It prints "ready <port>" once it accepts requests, and exits when its parent process goes away
(the parent's PID changes), so a killed test run or demo never leaves a stray server behind.

moto's backends are not safe under concurrent requests, and the local stack sends many at once
(concurrent webhook posts, several bridge pollers, the processor's parallel conversations). Two
faults were measured (`infra/local/moto_concurrency_check.py` reproduces both on plain moto):

- DynamoDB: `TransactWriteItems` deep-copies the whole table without a lock and, when the
  transaction is cancelled, puts that copy back, erasing every write made meanwhile by other
  requests; the unlocked copy also fails with HTTP 500 when another request changes the table
  during it ("dictionary changed size during iteration").
- SQS FIFO: two concurrent `ReceiveMessage` calls can each take messages of the same group, and
  after a visibility timeout the first of a group's timed-out messages is skipped while its later
  siblings are returned (moto frees in-flight messages one at a time, so the group still looks
  busy when the earlier one is examined). Its sequence numbers are random, not increasing.

So this wrapper serves requests one at a time *per AWS service* (requests to different services
still run concurrently), turns SQS long polls into short polls retried outside the lock (a long
poll must not hold the lock against the sends it waits for), frees a FIFO group's timed-out
messages together before a receive, and gives FIFO messages increasing sequence numbers, as SQS
does. Serialised, a transaction no longer needs moto's whole-table copy for its rollback, so it
copies only the items it touches (the copy made the table the stack's bottleneck). `serve(..., faithful=False)` runs plain moto, for the reproduction script.
"""

from __future__ import annotations

import copy
import io
import itertools
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import types
from collections import defaultdict
from typing import Any, Callable, Iterable

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.dynamodb import models as dynamodb_models
from moto.dynamodb.models.table import Table
from moto.sqs import models as sqs_models
from werkzeug.serving import BaseWSGIServer, make_server

# The signing scope names the service: "Credential=KEY/20261123/us-east-1/dynamodb/aws4_request".
_SCOPE = re.compile(r"Credential=[^/]+/\d+/[^/]+/([^/]+)/aws4_request")
# The longest an emulated long poll waits before looking again with no change to SQS (a
# visibility timeout running out, or a delay ending, changes nothing it is told about).
_POLL_INTERVAL_SECONDS = 0.25


def _service_of(environ: dict[str, Any]) -> str | None:
    match = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    return match.group(1) if match else None


class PerServiceSerialiser:
    """WSGI middleware: one request at a time into each service's backend."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app
        self._locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._locks_guard = threading.Lock()
        # Bumped after every SQS request but a receive, so waiting long polls look again at
        # once instead of hammering the lock the sends need.
        self._sqs_changed = threading.Condition()
        self._sqs_generation = 0

    def _lock(self, service: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks[service]

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        service = _service_of(environ)
        if service is None:
            # Unsigned requests (moto's own dashboard, health checks) touch no backend state.
            return list(self._app(environ, start_response))
        if (
            service == "sqs"
            and environ.get("HTTP_X_AMZ_TARGET") == "AmazonSQS.ReceiveMessage"
        ):
            return self._receive(environ, start_response, self._lock(service))
        with self._lock(service):
            # The body is produced inside the lock: WSGI apps may do their work lazily.
            body = list(self._app(environ, start_response))
        if service == "sqs":
            with self._sqs_changed:
                self._sqs_generation += 1
                self._sqs_changed.notify_all()
        return body

    def _receive(
        self,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        lock: threading.Lock,
    ) -> list[bytes]:
        """A long poll as short polls under the lock, waiting outside it for a change to SQS."""
        length = int(environ.get("CONTENT_LENGTH") or 0)
        request = json.loads(environ["wsgi.input"].read(length) or b"{}")
        wait = float(request.get("WaitTimeSeconds") or 0)
        request["WaitTimeSeconds"] = 0
        body = json.dumps(request).encode()
        deadline = time.monotonic() + wait
        while True:
            attempt = dict(environ)
            attempt["wsgi.input"] = io.BytesIO(body)
            attempt["CONTENT_LENGTH"] = str(len(body))
            captured: dict[str, Any] = {}
            with self._sqs_changed:
                generation = self._sqs_generation

            def capture(status: str, headers: list[Any], exc_info: Any = None) -> Any:
                captured["response"] = (status, headers, exc_info)
                return lambda _data: None

            with lock:
                chunks = list(self._app(attempt, capture))
            status, headers, exc_info = captured["response"]
            if not status.startswith("200") or time.monotonic() >= deadline or _has_messages(chunks):
                start_response(status, headers, exc_info)
                return chunks
            with self._sqs_changed:
                self._sqs_changed.wait_for(
                    lambda: self._sqs_generation != generation,
                    timeout=min(_POLL_INTERVAL_SECONDS, max(deadline - time.monotonic(), 0)),
                )


def _has_messages(chunks: list[bytes]) -> bool:
    try:
        return bool(json.loads(b"".join(chunks) or b"{}").get("Messages"))
    except ValueError:
        return True


def _patch_sqs_fifo() -> None:
    """Makes moto's FIFO queues keep a group's order on redelivery, as SQS does."""
    backend = sqs_models.SQSBackend
    if getattr(backend, "_local_stack_patched", False):
        return
    original_send = backend.send_message
    original_receive = backend.receive_message
    # Starts from the clock so numbers keep increasing across restarts, like SQS's.
    counter = itertools.count(time.time_ns() // 1000)
    counter_lock = threading.Lock()

    def send_message(self: Any, *args: Any, **kwargs: Any) -> Any:
        message = original_send(self, *args, **kwargs)
        if message.sequence_number is not None:
            with counter_lock:
                message.sequence_number = f"{next(counter):020d}"
        return message

    def receive_message(self: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        queue = self.get_queue(queue_name)
        if queue.fifo_queue:
            # A message whose visibility timeout ran out is no longer in flight. moto notices
            # that one message at a time while scanning, so a group's first timed-out message
            # is skipped (its siblings still look in flight) and a later one is returned first.
            timed_out = [m for m in queue.pending_messages if m.visible]
            for message in timed_out:
                queue.pending_messages.discard(message)
        return original_receive(self, queue_name, *args, **kwargs)

    backend.send_message = send_message
    backend.receive_message = receive_message
    backend._local_stack_patched = True


def _patch_dynamodb_transactions() -> None:
    """Makes a transaction copy only the items it touches, not the whole table.

    moto keeps a deep copy of every table a `TransactWriteItems` names, to put back if it is
    cancelled. Under the lock that is correct but slow: 100-180 ms per transaction once a table
    holds a thousand items, which made the table the local stack's bottleneck. Copying the
    touched items and restoring just those on cancellation gives the same result, because no
    other request can change the table while the lock is held.
    """
    backend = dynamodb_models.DynamoDBBackend
    if getattr(backend, "_local_stack_patched", False):
        return
    original = backend.transact_write_items
    # The module's `copy`, with tables "copied" as themselves (items are still deep-copied).
    tables_uncopied = types.SimpleNamespace(
        deepcopy=lambda x, memo=None: x if isinstance(x, Table) else copy.deepcopy(x, memo)
    )

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        touched = []
        for entry in transact_items:
            for op in entry.values():
                try:
                    table = self.get_table(op["TableName"])
                    keys = op["Key"] if "Key" in op else {
                        k: op["Item"][k]
                        for k in (table.hash_key_attr, table.range_key_attr)
                        if k is not None
                    }
                    hash_key, range_key = self.get_keys_value(table, keys)
                except Exception:  # noqa: BLE001 - a malformed operation is the original's to report
                    continue
                before = copy.deepcopy(table.get_item(hash_key, range_key))
                touched.append((table, hash_key, range_key, before))
        dynamodb_models.copy = tables_uncopied
        try:
            return original(self, transact_items)
        except Exception:
            # The original's rollback put the (uncopied) tables back; undo its writes here,
            # last first, so an item touched twice gets its state from before the transaction.
            for table, hash_key, range_key, before in reversed(touched):
                _restore(table, hash_key, range_key, before)
            raise
        finally:
            dynamodb_models.copy = copy

    backend.transact_write_items = transact_write_items
    backend._local_stack_patched = True


def _restore(table: Any, hash_key: Any, range_key: Any, before: Any) -> None:
    if range_key is not None:
        if before is None:
            table.items[hash_key].pop(range_key, None)
        else:
            table.items[hash_key][range_key] = before
    elif before is None:
        table.items.pop(hash_key, None)
    else:
        table.items[hash_key] = before


def serve(host: str, port: int, *, faithful: bool = True) -> tuple[BaseWSGIServer, threading.Thread]:
    """Starts moto on `host:port` in a thread; `faithful=False` is plain moto."""
    # One log line per request would drown the test output and the demo.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app: Any = DomainDispatcherApplication(create_backend_app)
    if faithful:
        _patch_sqs_fifo()
        _patch_dynamodb_transactions()
        app = PerServiceSerialiser(app)
    server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


def main() -> None:
    port = int(sys.argv[1])
    host = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
    parent = os.getppid()
    server, thread = serve(host, port)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"ready {port}", flush=True)
    try:
        while os.getppid() == parent:
            time.sleep(0.5)
    finally:
        server.shutdown()
        thread.join()


if __name__ == "__main__":
    main()
