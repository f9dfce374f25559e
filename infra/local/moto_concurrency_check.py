"""Reproduces moto's concurrency faults, then shows the local stack's moto (moto_server.py) has none.

    .venv/bin/python infra/local/moto_concurrency_check.py

Each scenario runs first against plain moto, then against `moto_server.serve()`:

- lost writes: many threads put items while others run `TransactWriteItems` that are cancelled by
  a failed condition; every acknowledged put must still be in the table afterwards;
- HTTP 500s: the same traffic, counting 5xx answers (with client retries off);
- FIFO redelivery order: a group's first record is processed, the next two fail, and after the
  visibility timeout the earlier one must come back first;
- FIFO group exclusivity: concurrent receivers must never hold messages of one group at once.

It exits 0 when the local stack's moto shows none of the faults (plain moto's numbers are
printed to show what the wrapper prevents; its faults are races, so a run may miss one).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import moto_server  # noqa: E402

NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"}, max_pool_connections=64)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client(service: str, endpoint: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=NO_RETRIES,
    )


def lost_writes(endpoint: str) -> dict[str, int]:
    ddb = client("dynamodb", endpoint)
    table = f"check-{uuid.uuid4().hex[:8]}"
    ddb.create_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    # A table of some size, so each transaction's copy of it takes a while.
    for i in range(300):
        ddb.put_item(TableName=table, Item={"pk": {"S": f"seed-{i}"}, "pad": {"S": "x" * 200}})
    acknowledged: list[str] = []
    server_errors = 0
    guard = threading.Lock()

    def writer(w: int) -> None:
        nonlocal server_errors
        for i in range(40):
            key = f"w{w}-{i}"
            try:
                ddb.put_item(TableName=table, Item={"pk": {"S": key}})
                with guard:
                    acknowledged.append(key)
            except ClientError as e:
                if e.response["ResponseMetadata"]["HTTPStatusCode"] >= 500:
                    with guard:
                        server_errors += 1

    def canceller(c: int) -> None:
        nonlocal server_errors
        for i in range(40):
            try:
                ddb.transact_write_items(
                    TransactItems=[
                        {"ConditionCheck": {
                            "TableName": table,
                            "Key": {"pk": {"S": "never-there"}},
                            "ConditionExpression": "attribute_exists(pk)",
                        }},
                        {"Put": {"TableName": table, "Item": {"pk": {"S": f"c{c}-{i}"}}}},
                    ]
                )
            except ClientError as e:
                if e.response["ResponseMetadata"]["HTTPStatusCode"] >= 500:
                    with guard:
                        server_errors += 1

    with ThreadPoolExecutor(16) as pool:
        for n in range(8):
            pool.submit(writer, n)
            pool.submit(canceller, n)
    stored: set[str] = set()
    pages = ddb.get_paginator("scan").paginate(TableName=table)
    for page in pages:
        stored.update(item["pk"]["S"] for item in page["Items"])
    lost = sum(1 for key in acknowledged if key not in stored)
    # A cancelled transaction's put must not stay either.
    kept = sum(1 for key in stored if key.startswith("c"))
    return {"acknowledged": len(acknowledged), "lost": lost, "http_5xx": server_errors, "kept_cancelled": kept}


def fifo_queue(sqs: Any, visibility: int) -> str:
    return sqs.create_queue(
        QueueName=f"check-{uuid.uuid4().hex[:8]}.fifo",
        Attributes={"FifoQueue": "true", "VisibilityTimeout": str(visibility)},
    )["QueueUrl"]


def redelivery_order(endpoint: str) -> dict[str, Any]:
    sqs = client("sqs", endpoint)
    url = fifo_queue(sqs, 1)
    for n in (1, 2, 3):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{n}", MessageGroupId="g", MessageDeduplicationId=f"d{n}")
    first = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    # m1 is processed; m2 and m3 fail and stay for the visibility timeout.
    sqs.delete_message(QueueUrl=url, ReceiptHandle=first[0]["ReceiptHandle"])
    time.sleep(1.5)
    order: list[str] = []
    for _ in range(10):
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        for m in got:
            order.append(m["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        if len(order) >= 2:
            break
        time.sleep(0.2)
    return {"first_batch": [m["Body"] for m in first], "redelivered": order, "in_order": order == ["m2", "m3"]}


def group_exclusivity(endpoint: str) -> dict[str, int]:
    sqs = client("sqs", endpoint)
    url = fifo_queue(sqs, 120)
    groups = 5
    for n in range(50):
        sqs.send_message(
            QueueUrl=url, MessageBody=str(n), MessageGroupId=f"g{n % groups}", MessageDeduplicationId=f"d{n}"
        )
    holders: dict[str, set[int]] = {}
    guard = threading.Lock()

    def receiver(r: int) -> None:
        for _ in range(5):
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            with guard:
                for m in got:
                    group = f"g{int(m['Body']) % groups}"
                    holders.setdefault(group, set()).add(r)

    with ThreadPoolExecutor(8) as pool:
        for r in range(8):
            pool.submit(receiver, r)
    shared = sum(1 for receivers in holders.values() if len(receivers) > 1)
    return {"groups": groups, "groups_held_by_two_receivers": shared}


def run(label: str, endpoint: str) -> bool:
    writes = lost_writes(endpoint)
    order = redelivery_order(endpoint)
    exclusive = group_exclusivity(endpoint)
    print(f"{label}:")
    print(
        f"  DynamoDB writes acknowledged {writes['acknowledged']}, lost {writes['lost']}, "
        f"HTTP 5xx {writes['http_5xx']}, cancelled writes kept {writes['kept_cancelled']}"
    )
    print(f"  FIFO redelivery after m1 done: {order['redelivered']} (in order: {order['in_order']})")
    print(f"  FIFO groups held by two concurrent receivers: {exclusive['groups_held_by_two_receivers']} of {exclusive['groups']}")
    return (
        writes["lost"] == 0
        and writes["http_5xx"] == 0
        and writes["kept_cancelled"] == 0
        and order["in_order"]
        and exclusive["groups_held_by_two_receivers"] == 0
    )


def main() -> int:
    # Plain moto first: the wrapper's patches are process-wide once applied.
    port = free_port()
    server, thread = moto_server.serve("127.0.0.1", port, faithful=False)
    plain_ok = run("plain moto", f"http://127.0.0.1:{port}")
    server.shutdown()
    thread.join()

    port = free_port()
    server, thread = moto_server.serve("127.0.0.1", port)
    ok = run("local stack moto (infra/local/moto_server.py)", f"http://127.0.0.1:{port}")
    server.shutdown()
    thread.join()
    if plain_ok:
        print("note: plain moto showed no fault this run (the faults are races)")
    print("OK" if ok else "FAULT in the local stack's moto")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
