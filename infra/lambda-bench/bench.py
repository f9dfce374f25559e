"""infra/bench: each function measured the way Lambda runs it, on this machine.

A fake Lambda Runtime API (the HTTP contract Lambda serves at AWS_LAMBDA_RUNTIME_API) feeds one
function process N events, back to back, and records:

- init: process start -> its first GET /runtime/invocation/next;
- first: the first invocation (lazy clients, the secret fetch);
- p50 / p99: the later invocations, from handing out the event to receiving the response;
- CPU per invocation: user + system time of all the process's threads (the first field of
  /proc/<pid>/task/*/schedstat, in nanoseconds) across the later invocations, divided by their
  count; the runtime's own loop (GET next, POST response) is included, as Lambda bills it;
- peak RSS: VmHWM after the last invocation.

Subjects, each a fresh process per round, rounds alternating, medians printed:
- webhook-ingest (release build): signed API Gateway v2 events, one Meta text each;
- the Python peer (ingest_peer.py under awslambdaric, boto3): the same events;
- message-processor (release build): SQS events of 10 texts from 10 customers, AI off, and AI on
  (the offline responder answers, replies go to a WhatsApp stand-in served here).

AWS is moto on loopback, through the same wrapper as the local stack (infra/local/moto_server.py:
one request at a time per AWS service, so moto's races do not show up as failures and retries).
A separate, short pass per subject counts the AWS requests one warm invocation makes (moto's
request recorder), which gives DynamoDB calls per inbound text. With --compare, every Rust subject
also runs the binaries of another folder ("<subject>-alt"), interleaved in the same rounds.
"""

import argparse
import hashlib
import hmac
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PHONE_NUMBER_ID = "106540352242922"
WORKSPACE = "bench"
APP_SECRET = "bench-meta-app-secret"
REGION = "us-east-1"
RUNTIME_PREFIX = "/2018-06-01/runtime"
INGEST_LIKE = ("ingest", "peer")
# The Rust subjects, which --compare runs a second time from another folder as "<subject>-alt".
RUST = ("ingest", "processor-off", "processor-on")


def base(name):
    """The subject a --compare run ("<subject>-alt") is a variant of."""
    return name.removesuffix("-alt")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_ns(pid):
    """CPU time of every live thread of `pid`, in nanoseconds."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return 0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def peak_rss_kb(pid):
    """VmHWM of a live process; 0 when the kernel does not report it (see run_function)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def percentile(values, p):
    ordered = sorted(values)
    if not ordered:
        return 0.0
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


# ---------------------------------------------------------------------------------------------
# The fake Lambda Runtime API


class Invocations:
    """One function process's run: the events to hand out and what was measured."""

    def __init__(self, events, on_next=None):
        self.events = events  # list of bytes
        self.on_next = on_next or (lambda index: None)
        self.pid = None
        self.spawned = None
        self.next_index = 0
        self.sent = [None] * len(events)
        self.done = [None] * len(events)
        self.responses = [None] * len(events)
        self.errors = []
        self.cpu = {}
        self.rss_kb = 0
        self.first_next = None
        self.finished = threading.Event()
        self.stop = threading.Event()
        self.lock = threading.Lock()


class RuntimeApi(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", free_port()), RuntimeHandler)
        self.run = None

    @property
    def address(self):
        return f"127.0.0.1:{self.server_address[1]}"


class RuntimeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        # Small request/response exchanges: without this, Nagle's algorithm and delayed ACKs
        # add tens of milliseconds to a response written in two parts.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def reply(self, status, body=b"", headers=()):
        head = [f"HTTP/1.1 {status} {'OK' if status == 200 else 'Accepted' if status == 202 else 'Not Found'}"]
        head += [f"{name}: {value}" for name, value in headers]
        head.append(f"Content-Length: {len(body)}")
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)

    def do_GET(self):
        run = self.server.run
        if not self.path.startswith(f"{RUNTIME_PREFIX}/invocation/next") or run is None:
            return self.reply(404)
        now = time.perf_counter()
        # VmHWM at every request, not only the last: once, the Python peer's /proc status had
        # no VmHWM line at the last one. (The child's rusage at exit is no substitute: its
        # ru_maxrss counts the forked harness before the exec.)
        rss_kb = peak_rss_kb(run.pid)
        with run.lock:
            run.rss_kb = max(run.rss_kb, rss_kb)
            index = run.next_index
            if index == 0:
                run.first_next = now
                run.cpu["init"] = cpu_ns(run.pid)
            if index == 1:
                run.cpu["after_first"] = cpu_ns(run.pid)
            if index == len(run.events):
                run.cpu["end"] = cpu_ns(run.pid)
                run.finished.set()
            else:
                run.next_index += 1
        run.on_next(index)
        if index == len(run.events):
            # Lambda would freeze the process here; the harness stops it instead.
            run.stop.wait()
            self.close_connection = True
            return
        body = run.events[index]
        headers = [
            ("Content-Type", "application/json"),
            ("Lambda-Runtime-Aws-Request-Id", f"req-{index}"),
            ("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 60_000)),
            ("Lambda-Runtime-Invoked-Function-Arn", f"arn:aws:lambda:{REGION}:123456789012:function:bench"),
            ("Lambda-Runtime-Trace-Id", f"Root=1-{index:08x}-{uuid.uuid4().hex[:24]};Sampled=0"),
        ]
        run.sent[index] = time.perf_counter()
        self.reply(200, body, headers)

    def do_POST(self):
        now = time.perf_counter()
        run = self.server.run
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = self.path[len(RUNTIME_PREFIX):].strip("/").split("/")
        if run is None:
            return self.reply(404)
        if parts[:2] == ["init", "error"]:
            run.errors.append(("init", body.decode(errors="replace")))
            run.finished.set()
            return self.reply(202)
        if len(parts) == 3 and parts[0] == "invocation":
            index = int(parts[1].removeprefix("req-"))
            if parts[2] == "response":
                run.done[index] = now
                run.responses[index] = body
            else:
                run.done[index] = now
                run.errors.append((index, body.decode(errors="replace")))
            return self.reply(202, b"{}", [("Content-Type", "application/json")])
        return self.reply(404)


def run_function(api, command, env, events, log_path, on_next=None, timeout=600, perf=None):
    """Starts `command` against the runtime API, hands it `events`, stops it, returns the run."""
    run = Invocations(events, on_next)
    api.run = run
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "AWS_LAMBDA_RUNTIME_API": api.address,
        "AWS_LAMBDA_FUNCTION_NAME": "bench",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/bench",
        **env,
    }
    with open(log_path, "ab") as log:
        run.spawned = time.perf_counter()
        process = subprocess.Popen(command, env=full_env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        run.pid = process.pid
        profiler = None
        try:
            if perf:
                # Profiles the warm invocations only: attached once the first one is done.
                def attach(index, previous=run.on_next):
                    nonlocal profiler
                    if index == 1:
                        profiler = subprocess.Popen(
                            ["perf", "record", "-F", "4999", "-g", "-o", perf, "-p", str(run.pid)],
                            stdout=log, stderr=log,
                        )
                        time.sleep(1.0)
                    previous(index)
                run.on_next = attach
            deadline = time.monotonic() + timeout
            while not run.finished.wait(0.1):
                if process.poll() is not None:
                    raise RuntimeError(f"{command[0]} exited with {process.returncode}; log: {log_path}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{command[0]} did not finish {len(events)} invocations in {timeout}s")
            if profiler:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(60)
        finally:
            run.stop.set()
            if process.poll() is None:
                process.terminate()
            try:
                _, status, usage = os.wait4(process.pid, 0)
                run.rusage_cpu_ns = int((usage.ru_utime + usage.ru_stime) * 1e9)
            except ChildProcessError:
                run.rusage_cpu_ns = 0
            api.run = None
    if run.errors:
        raise RuntimeError(f"{command[0]} reported errors: {run.errors[:3]}; log: {log_path}")
    return run


def summarise(run, unit_count=1):
    """The run's figures, in milliseconds and megabytes. `unit_count`: records per invocation."""
    n = len(run.events)
    warm = [(run.done[i] - run.sent[i]) * 1000 for i in range(1, n)]
    warm_cpu_ms = (run.cpu["end"] - run.cpu["after_first"]) / 1e6 / max(1, n - 1)
    return {
        "init_ms": (run.first_next - run.spawned) * 1000,
        "init_cpu_ms": run.cpu["init"] / 1e6,
        "first_ms": (run.done[0] - run.sent[0]) * 1000,
        "first_cpu_ms": (run.cpu["after_first"] - run.cpu["init"]) / 1e6,
        "p50_ms": statistics.median(warm) if warm else 0.0,
        "p99_ms": percentile(warm, 99),
        "cpu_per_invocation_ms": warm_cpu_ms,
        "cpu_per_record_ms": warm_cpu_ms / unit_count,
        "peak_rss_mb": run.rss_kb / 1024,
        "invocations": n,
    }


# ---------------------------------------------------------------------------------------------
# Moto, resources and events


class Moto:
    def __init__(self, endpoint, workdir):
        self.process = None
        self.recording = Path(workdir) / "moto_recording"
        if endpoint is None:
            port = free_port()
            env = {**os.environ, "MOTO_RECORDER_FILEPATH": str(self.recording)}
            self.process = subprocess.Popen(
                [sys.executable, str(ROOT / "infra/local/moto_server.py"), str(port)],
                stdout=subprocess.PIPE, stderr=open(Path(workdir) / "moto.log", "ab"), env=env, text=True,
            )
            line = self.process.stdout.readline()
            if not line.startswith("ready"):
                raise RuntimeError(f"moto did not start; see {workdir}/moto.log")
            endpoint = f"http://127.0.0.1:{port}"
        self.endpoint = endpoint

    def client(self, service):
        return boto3.client(
            service, endpoint_url=self.endpoint, region_name=REGION,
            aws_access_key_id="test", aws_secret_access_key="test",
        )

    def recorder(self, action):
        request = urllib.request.Request(f"{self.endpoint}/moto-api/recorder/{action}", method="POST" if action != "download-recording" else "GET")
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.read()

    def stop(self):
        if self.process:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


class KeepAliveProxy(ThreadingHTTPServer):
    """Moto closes the connection after every answer, while a warm Lambda keeps its connections
    to AWS open across invocations. This proxy keeps the functions' connections open and opens a
    new one to moto per request, so the functions' CPU does not include a TCP connect and close
    per AWS call that they would not make in Lambda."""

    daemon_threads = True

    def __init__(self, moto_endpoint):
        super().__init__(("127.0.0.1", free_port()), KeepAliveHandler)
        self.upstream = moto_endpoint.removeprefix("http://")

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


class KeepAliveHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        upstream = http.client.HTTPConnection(self.server.upstream, timeout=120)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in self.HOP_BY_HOP}
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
        finally:
            upstream.close()
        head = [f"HTTP/1.1 {response.status} {response.reason}"]
        head += [f"{k}: {v}" for k, v in response.getheaders() if k.lower() not in self.HOP_BY_HOP]
        head.append(f"Content-Length: {len(data)}")
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = forward


def create_table(moto, name, ai_enabled):
    """The app table (keys as template.yaml has them) with one workspace owning the bench number."""
    dynamodb = moto.client("dynamodb")
    s = lambda v: {"S": v}
    key = lambda attribute: {"AttributeName": attribute, "AttributeType": "S"}
    dynamodb.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[key("pk"), key("sk"), key("gsi1pk"), key("gsi1sk")],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[{
            "IndexName": "GSI1",
            "KeySchema": [{"AttributeName": "gsi1pk", "KeyType": "HASH"}, {"AttributeName": "gsi1sk", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "ALL"},
        }],
    )
    dynamodb.put_item(TableName=name, Item={
        "pk": s(f"PN#{PHONE_NUMBER_ID}"), "sk": s("INTEGRATION"),
        "workspace_id": s(WORKSPACE), "provider": s("meta"), "status": s("active"),
    })
    dynamodb.put_item(TableName=name, Item={
        "pk": s(f"WS#{WORKSPACE}"), "sk": s("AI_CONFIG"), "enabled": {"BOOL": ai_enabled},
    })


def create_queue(moto, name):
    return moto.client("sqs").create_queue(
        QueueName=f"{name}.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "false"},
    )["QueueUrl"]


def setup(moto, prefix, whatsapp_url, aws_endpoint):
    """Creates the app secret; returns each subject's environment. Queues and tables are made
    per run (fresh_resources), so moto's bookkeeping is the same size in every run."""
    secret_arn = moto.client("secretsmanager").create_secret(
        Name=f"{prefix}-app-secret",
        SecretString=json.dumps({"meta_app_secret": APP_SECRET, "meta_access_token": "bench-token"}),
    )["ARN"]
    common = {
        "AWS_ENDPOINT_URL": aws_endpoint,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "APP_SECRET_ID": secret_arn,
        "RUST_LOG": "info",
    }
    return {
        "ingest": common,
        "processor": {**common, "META_GRAPH_BASE_URL": whatsapp_url},
    }


def fresh_resources(moto, name, run_name):
    """A new queue (ingest and its peer) or table (the processor) for one run, and its cleanup."""
    if base(name) in INGEST_LIKE:
        url = create_queue(moto, run_name)
        return {"EVENTS_QUEUE_URL": url}, lambda: moto.client("sqs").delete_queue(QueueUrl=url)
    create_table(moto, run_name, base(name) == "processor-on")
    return {"TABLE_NAME": run_name}, lambda: moto.client("dynamodb").delete_table(TableName=run_name)


class Counter:
    def __init__(self):
        self.n = 0
        self.lock = threading.Lock()

    def next(self):
        with self.lock:
            self.n += 1
            return self.n


SEQUENCE = Counter()


def meta_text_payload(messages):
    """A Meta delivery of (wamid, wa_id, text, timestamp) texts."""
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550100", "phone_number_id": PHONE_NUMBER_ID},
            "contacts": [{"profile": {"name": f"Customer {wa_id[-4:]}"}, "wa_id": wa_id} for _, wa_id, _, _ in messages],
            "messages": [
                {"from": wa_id, "id": wamid, "timestamp": str(ts), "type": "text", "text": {"body": text}}
                for wamid, wa_id, text, ts in messages
            ],
        }}]}],
    }


def wamid():
    return f"wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQUJFTkNI{uuid.uuid4().hex.upper()}{SEQUENCE.next():06}"


def ingest_event(body, signature=True):
    headers = {"content-type": "application/json", "user-agent": "facebookexternalua"}
    if signature:
        headers["x-hub-signature-256"] = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    path = "/webhooks/whatsapp"
    return json.dumps({
        "version": "2.0", "routeKey": f"POST {path}", "rawPath": path, "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012", "apiId": "bench", "domainName": "bench.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "bench",
            "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.10", "userAgent": "facebookexternalua"},
            "requestId": uuid.uuid4().hex, "routeKey": f"POST {path}", "stage": "$default",
            "time": "22/Nov/2026:10:00:00 +0000", "timeEpoch": int(time.time() * 1000),
        },
        "body": body.decode(), "isBase64Encoded": False,
    }).encode()


def ingest_events(n):
    """n signed webhooks, each one text (about 1 KB, the common case) from one of 50 customers."""
    now = int(time.time())
    out = []
    for i in range(n):
        wa_id = f"1650555{1000 + i % 50}"
        body = json.dumps(meta_text_payload([(wamid(), wa_id, f"Hello, this is message {i}. Do you ship abroad?", now)])).encode()
        out.append(ingest_event(body))
    return out


def sqs_event(queue_arn, texts):
    """An SQS event of envelopes of (wamid, wa_id, text, timestamp) texts, as ingest writes them."""
    received = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    records = []
    for i, (wid, wa_id, text, ts) in enumerate(texts):
        envelope = {
            "v": 1, "event_id": f"msg:{wid}", "kind": "inbound_message", "event_type": "text", "source": "meta",
            "phone_number_id": PHONE_NUMBER_ID,
            "conversation": {"phone_number_id": PHONE_NUMBER_ID, "wa_id": wa_id},
            "profile_name": f"Customer {wa_id[-4:]}", "received_at": received,
            "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)),
            "raw": {"from": wa_id, "id": wid, "timestamp": str(ts), "type": "text", "text": {"body": text}},
        }
        body = json.dumps(envelope, separators=(",", ":"))
        group = f"{PHONE_NUMBER_ID}:{wa_id}"
        records.append({
            "messageId": str(uuid.uuid4()), "receiptHandle": uuid.uuid4().hex, "body": body,
            "attributes": {
                "ApproximateReceiveCount": "1", "SentTimestamp": str(int(time.time() * 1000)),
                "SenderId": "AIDAIENQZJOLO23YVJ4VO", "ApproximateFirstReceiveTimestamp": str(int(time.time() * 1000)),
                "MessageGroupId": group, "MessageDeduplicationId": hashlib.sha256(f"msg:{wid}".encode()).hexdigest(),
                "SequenceNumber": str(SEQUENCE.next()),
            },
            "messageAttributes": {
                name: {"stringValue": value, "stringListValues": [], "binaryListValues": [], "dataType": "String"}
                for name, value in (("event_id", f"msg:{wid}"), ("event_kind", "inbound_message"), ("source", "meta"))
            },
            "md5OfBody": hashlib.md5(body.encode()).hexdigest(), "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn, "awsRegion": REGION,
        })
    return json.dumps({"Records": records}).encode()


def processor_events(n, queue_arn):
    """n SQS events of 10 texts, each from a different customer of a pool of 50."""
    now = int(time.time())
    out = []
    for i in range(n):
        texts = [(wamid(), f"1650555{2000 + (i * 10 + j) % 50}", f"Hi, message {j} of batch {i}: do you ship abroad?", now) for j in range(10)]
        out.append(sqs_event(queue_arn, texts))
    return out


# ---------------------------------------------------------------------------------------------
# The WhatsApp API stand-in (the processor's replies and read receipts)


class WhatsAppHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        request = json.loads(self.rfile.read(length) or b"{}")
        self.server.count += 1
        if request.get("status") == "read":
            body = {"success": True}
        else:
            body = {
                "messaging_product": "whatsapp",
                "contacts": [{"input": request.get("to"), "wa_id": request.get("to")}],
                "messages": [{"id": f"wamid.REPLY{uuid.uuid4().hex.upper()}"}],
            }
        data = json.dumps(body).encode()
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        self.wfile.write(head.encode() + data)


# ---------------------------------------------------------------------------------------------
# The bench


def target_dir():
    if os.environ.get("CARGO_TARGET_DIR"):
        return Path(os.environ["CARGO_TARGET_DIR"])
    metadata = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT, check=True, capture_output=True,
    )
    return Path(json.loads(metadata.stdout)["target_directory"])


def check_ingest(run, expected):
    for i, response in enumerate(run.responses):
        answer = json.loads(response)
        body = json.loads(answer.get("body") or "{}")
        if answer.get("statusCode") != 200 or body.get("enqueued") != expected:
            raise RuntimeError(f"invocation {i} answered {answer}")


def check_processor(run):
    """Counts the records the processor failed: reported in the table, and fatal only when
    every record failed (then the run measured nothing)."""
    failed = sum(len(json.loads(r).get("batchItemFailures") or []) for r in run.responses)
    if failed == len(run.responses) * 10:
        raise RuntimeError(f"{failed} of {len(run.responses) * 10} records failed")
    return failed


def counted_requests(moto, recording):
    """AWS requests recorded by moto, by `X-Amz-Target` (or `<METHOD> <service host>`)."""
    counts = {}
    for line in recording.decode().splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        headers = {k.lower(): v for k, v in entry["headers"].items()}
        target = headers.get("x-amz-target")
        if target is None:
            auth = headers.get("authorization", "")
            service = auth.split("Credential=")[1].split("/")[3] if "Credential=" in auth else "?"
            target = f"{service}.{entry['method']}"
        counts[target] = counts.get(target, 0) + 1
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--webhooks", type=int, default=200, help="ingest invocations per run")
    parser.add_argument("--batches", type=int, default=10, help="processor invocations (SQS events of 10) per run")
    parser.add_argument("--profile", default="release", help="cargo profile of the binaries (release, or dev for --smoke)")
    parser.add_argument("--subjects", default="ingest,peer,processor-off,processor-on")
    parser.add_argument("--binaries", help="folder of the function binaries (default: the cargo profile's), to compare builds")
    parser.add_argument("--compare", help="also run the function binaries in this folder (subjects <subject>-alt), "
                        "interleaved with this build's in every round, and print their ratios")
    parser.add_argument("--direct-moto", action="store_true",
                        help="no keep-alive proxy: every AWS call opens a connection to moto")
    parser.add_argument("--moto", help="use this moto endpoint instead of starting one")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--perf", help="record perf profiles of the Rust functions' warm invocations into this folder "
                        "(an extra run per subject after the rounds, not counted in the table)")
    parser.add_argument("--workdir", default=str(ROOT / ".local/bench"))
    args = parser.parse_args()

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    for old in workdir.glob("*.log"):
        old.unlink()
    subjects = args.subjects.split(",")
    binaries = Path(args.binaries) if args.binaries else target_dir() / ("debug" if args.profile == "dev" else args.profile)
    venv_python = Path(sys.executable)

    moto = Moto(args.moto, workdir)
    whatsapp = ThreadingHTTPServer(("127.0.0.1", free_port()), WhatsAppHandler)
    whatsapp.daemon_threads = True
    whatsapp.count = 0
    threading.Thread(target=whatsapp.serve_forever, daemon=True).start()
    api = RuntimeApi()
    threading.Thread(target=api.serve_forever, daemon=True).start()
    try:
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        aws_endpoint = moto.endpoint
        if not args.direct_moto:
            proxy = KeepAliveProxy(moto.endpoint)
            threading.Thread(target=proxy.serve_forever, daemon=True).start()
            aws_endpoint = proxy.endpoint
        envs = setup(moto, prefix, f"http://127.0.0.1:{whatsapp.server_address[1]}", aws_endpoint)
        # Only the ARN goes into the processor's events: a queue of its own is not needed.
        queue_arn = f"arn:aws:sqs:{REGION}:123456789012:{prefix}-events.fifo"

        commands = {
            "ingest": ([str(binaries / "webhook-ingest")], envs["ingest"]),
            "peer": ([str(venv_python), "-m", "awslambdaric", "ingest_peer.handler"],
                     {**envs["ingest"], "PYTHONPATH": str(HERE), "LAMBDA_TASK_ROOT": str(HERE),
                      # No __pycache__ in the source tree; Lambda's own is read-only too.
                      "PYTHONDONTWRITEBYTECODE": "1"}),
            "processor-off": ([str(binaries / "message-processor")], envs["processor"]),
            "processor-on": ([str(binaries / "message-processor")], envs["processor"]),
        }
        labels = {
            "ingest": "webhook-ingest (Rust)",
            "peer": "ingest peer (Python, boto3)",
            "processor-off": "message-processor, AI off",
            "processor-on": "message-processor, AI on",
        }
        if args.compare:
            for name in [n for n in subjects if n in RUST]:
                command, env = commands[name]
                commands[f"{name}-alt"] = ([str(Path(args.compare) / Path(command[0]).name)], env)
                labels[f"{name}-alt"] = f"{labels[name].replace(' (Rust)', '')} (--compare)"
                subjects.insert(subjects.index(name) + 1, f"{name}-alt")
        for name in subjects:
            if not Path(commands[name][0][0]).exists():
                raise SystemExit(f"{commands[name][0][0]} is missing: build it first")

        def events_for(name, n):
            if base(name) in INGEST_LIKE:
                return ingest_events(n)
            return processor_events(n, queue_arn)

        def check(name, run):
            if base(name) in INGEST_LIKE:
                check_ingest(run, 1)
                return 0
            return check_processor(run)

        results = {name: [] for name in subjects}
        for round_index in range(args.rounds):
            order = subjects if round_index % 2 == 0 else list(reversed(subjects))
            for name in order:
                n = args.webhooks if base(name) in INGEST_LIKE else args.batches
                command, env = commands[name]
                resources, cleanup = fresh_resources(moto, name, f"{prefix}-{round_index}-{name}")
                env = {**env, **resources}
                run = run_function(api, command, env, events_for(name, n), workdir / f"{name}.log")
                failed = check(name, run)
                figures = summarise(run, 1 if base(name) in INGEST_LIKE else 10)
                figures["failed_records"] = failed
                results[name].append(figures)
                print(f"  round {round_index + 1}/{args.rounds} {labels[name]:<28} "
                      f"init {figures['init_ms']:6.1f} ms  p50 {figures['p50_ms']:6.2f} ms  "
                      f"CPU/invocation {figures['cpu_per_invocation_ms']:6.3f} ms  RSS {figures['peak_rss_mb']:5.1f} MB"
                      + (f"  failed records {failed}" if failed else ""),
                      file=sys.stderr, flush=True)
                cleanup()

        # Profiles: one more run per Rust subject with perf attached after the first invocation.
        # Separate from the rounds, because perf's sampling costs the profiled process CPU.
        if args.perf:
            Path(args.perf).mkdir(parents=True, exist_ok=True)
            for name in [n for n in subjects if base(n) in RUST]:
                n = args.webhooks if base(name) in INGEST_LIKE else args.batches
                command, env = commands[name]
                resources, cleanup = fresh_resources(moto, name, f"{prefix}-perf-{name}")
                run = run_function(api, command, {**env, **resources}, events_for(name, n),
                                   workdir / f"{name}.log", perf=str(Path(args.perf) / f"{name}.data"))
                check(name, run)
                cleanup()
                print(f"  perf profile of {labels[name]} in {Path(args.perf) / f'{name}.data'}", file=sys.stderr)

        # AWS requests per warm invocation: one warm-up invocation, then one recorded.
        requests = {}
        # Only a moto of our own: a shared one records other clients' requests too.
        if moto.process is not None:
            for name in subjects:
                command, env = commands[name]
                resources, cleanup = fresh_resources(moto, name, f"{prefix}-count-{name}")
                env = {**env, **resources}

                def on_next(index, total=2):
                    if index == 1:
                        moto.recorder("reset-recording")
                        moto.recorder("start-recording")
                    if index == total:
                        moto.recorder("stop-recording")

                run = run_function(api, command, env, events_for(name, 2), workdir / f"{name}.log", on_next=on_next)
                check(name, run)
                counts = counted_requests(moto, moto.recorder("download-recording"))
                moto.recorder("reset-recording")
                cleanup()
                per = 1 if base(name) in INGEST_LIKE else 10
                requests[name] = {"per_invocation": counts, "records_per_invocation": per}
    finally:
        api.shutdown()
        whatsapp.shutdown()
        moto.stop()

    medians = {
        name: {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
        for name, rounds in results.items() if rounds
    }
    report = {
        "machine": {"cores": os.cpu_count(), "loadavg_1m": os.getloadavg()[0]},
        "rounds": args.rounds,
        "profile": args.profile,
        "aws_connections": "one per request (moto)" if args.direct_moto else "kept alive (proxy in front of moto)",
        "median": medians,
        "runs": results,
        "aws_requests_per_warm_invocation": requests,
        "whatsapp_requests": whatsapp.count,
    }
    ratio_keys = ("init_ms", "first_ms", "p50_ms", "p99_ms", "cpu_per_invocation_ms", "peak_rss_mb")
    if "ingest" in medians and "peer" in medians:
        rust, peer = medians["ingest"], medians["peer"]
        report["peer_over_rust"] = {key: (peer[key] / rust[key] if rust[key] else None) for key in ratio_keys}
    # --compare: the other build over this one, per subject, median of the per-round ratios (the
    # two runs of a round are back to back, so they share the machine's load).
    compared = {}
    for name in results:
        alt = f"{name}-alt"
        if alt in results and results[alt]:
            compared[name] = {
                key: statistics.median(b[key] / a[key] for a, b in zip(results[name], results[alt]) if a[key])
                for key in ratio_keys
            }
    if compared:
        report["compare_over_this"] = compared
    print_table(report, labels)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


def print_table(report, labels):
    medians = report["median"]
    print()
    print(f"Median of {report['rounds']} round(s), {report['profile']} builds, "
          f"{report['machine']['cores']} cores, load {report['machine']['loadavg_1m']:.2f}, "
          f"AWS connections {report['aws_connections']}")
    header = f"{'':<30}{'init':>9}{'first':>9}{'p50':>9}{'p99':>9}{'CPU/inv':>10}{'CPU/rec':>10}{'RSS':>8}"
    print(header)
    print(f"{'':<30}{'ms':>9}{'ms':>9}{'ms':>9}{'ms':>9}{'ms':>10}{'ms':>10}{'MB':>8}")
    for name, m in medians.items():
        print(f"{labels[name]:<30}{m['init_ms']:>9.1f}{m['first_ms']:>9.2f}{m['p50_ms']:>9.2f}{m['p99_ms']:>9.2f}"
              f"{m['cpu_per_invocation_ms']:>10.3f}{m['cpu_per_record_ms']:>10.3f}{m['peak_rss_mb']:>8.1f}")
    failed = {labels[n]: m["failed_records"] for n, m in medians.items() if m.get("failed_records")}
    if failed:
        print(f"Records failed (see the functions' logs and moto.log in the workdir): {failed}")
    ratio = report.get("peer_over_rust")
    if ratio:
        fmt = lambda v: f"{v:.1f}x" if v else "-"
        print(f"{'peer / Rust':<30}{fmt(ratio['init_ms']):>9}{fmt(ratio['first_ms']):>9}{fmt(ratio['p50_ms']):>9}"
              f"{fmt(ratio['p99_ms']):>9}{fmt(ratio['cpu_per_invocation_ms']):>10}{'':>10}{fmt(ratio['peak_rss_mb']):>8}")
    compared = report.get("compare_over_this")
    if compared:
        print()
        print("--compare build / this build (median of the per-round ratios; below 1 is cheaper):")
        for name, ratio in compared.items():
            print(f"  {labels[name]:<28}{ratio['init_ms']:>9.2f}{ratio['first_ms']:>9.2f}{ratio['p50_ms']:>9.2f}"
                  f"{ratio['p99_ms']:>9.2f}{ratio['cpu_per_invocation_ms']:>10.3f}{'':>10}{ratio['peak_rss_mb']:>8.2f}")
    requests = report["aws_requests_per_warm_invocation"]
    if requests:
        print()
        print("AWS requests of one warm invocation (moto's recorder):")
        for name, r in requests.items():
            counts = r["per_invocation"]
            dynamodb = sum(v for k, v in counts.items() if k.startswith("DynamoDB"))
            detail = ", ".join(f"{k.split('.')[-1]} {v}" for k, v in sorted(counts.items()))
            per = r["records_per_invocation"]
            extra = f"; DynamoDB per inbound text {dynamodb / per:.1f}" if base(name).startswith("processor") else ""
            print(f"  {labels[name]:<30} {detail or 'none'}{extra}")


if __name__ == "__main__":
    main()
