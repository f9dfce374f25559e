"""The Python peer of webhook-ingest, for infra/bench: the same job written the way a Python Lambda
would be (boto3, run by awslambdaric), so both are measured by the same harness.

It does what the Rust function does for a Meta delivery: verify X-Hub-Signature-256 over the raw
body in constant time, split the delivery into one envelope per message and per status, and put
them on the FIFO queue with SendMessageBatch (group id, de-duplication id, message attributes),
retrying refused entries. The app secret is fetched from Secrets Manager on first use and cached
with a TTL, as the Rust function does. Kapso payloads are out of its scope.
"""

import base64
import hashlib
import hmac
import json
import os
import time
from datetime import datetime, timezone

import boto3

QUEUE_URL = os.environ["EVENTS_QUEUE_URL"]
SECRET_ID = os.environ["APP_SECRET_ID"]
SECRETS_TTL = int(os.environ.get("SECRETS_TTL_SECONDS", "300"))

# Built once per container, as Lambda guides recommend; AWS_ENDPOINT_URL points them at moto.
sqs = boto3.client("sqs")
secretsmanager = boto3.client("secretsmanager")
_secrets = {"value": None, "fetched": 0.0}


def app_secret():
    if _secrets["value"] is None or time.monotonic() - _secrets["fetched"] > SECRETS_TTL:
        value = json.loads(secretsmanager.get_secret_value(SecretId=SECRET_ID)["SecretString"])
        _secrets.update(value=value, fetched=time.monotonic())
    return _secrets["value"]


def answer(status, body):
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(body),
    }


def rfc3339(seconds):
    return datetime.fromtimestamp(int(seconds), timezone.utc).isoformat().replace("+00:00", "Z")


def envelopes(payload, received_at):
    out = []
    for entry in payload.get("entry") or []:
        for change in entry.get("changes") or []:
            value = change.get("value") or {}
            phone_number_id = (value.get("metadata") or {}).get("phone_number_id")
            names = {c.get("wa_id"): (c.get("profile") or {}).get("name") for c in value.get("contacts") or []}
            for message in value.get("messages") or []:
                wa_id = message.get("from")
                out.append({
                    "v": 1, "event_id": f"msg:{message['id']}", "kind": "inbound_message",
                    "event_type": message.get("type", "unknown"), "source": "meta",
                    "phone_number_id": phone_number_id,
                    "conversation": {"phone_number_id": phone_number_id, "wa_id": wa_id},
                    "profile_name": names.get(wa_id), "received_at": received_at,
                    "occurred_at": rfc3339(message.get("timestamp", 0)), "raw": message,
                })
            for status in value.get("statuses") or []:
                wa_id = status.get("recipient_id")
                out.append({
                    "v": 1, "event_id": f"status:{status['id']}:{status.get('status')}", "kind": "status",
                    "event_type": status.get("status", "unknown"), "source": "meta",
                    "phone_number_id": phone_number_id,
                    "conversation": {"phone_number_id": phone_number_id, "wa_id": wa_id},
                    "received_at": received_at, "occurred_at": rfc3339(status.get("timestamp", 0)),
                    "raw": status,
                })
    return out


def entry(i, envelope):
    conversation = envelope["conversation"]
    attribute = lambda value: {"DataType": "String", "StringValue": value}
    return {
        "Id": f"e{i}",
        "MessageBody": json.dumps(envelope, separators=(",", ":")),
        "MessageGroupId": f"{conversation['phone_number_id']}:{conversation['wa_id']}",
        "MessageDeduplicationId": hashlib.sha256(envelope["event_id"].encode()).hexdigest(),
        "MessageAttributes": {
            "event_id": attribute(envelope["event_id"]),
            "event_kind": attribute(envelope["kind"]),
            "source": attribute(envelope["source"]),
        },
    }


def send(entries):
    for start in range(0, len(entries), 10):
        pending = entries[start:start + 10]
        for attempt in range(4):
            failed = {f["Id"] for f in sqs.send_message_batch(QueueUrl=QUEUE_URL, Entries=pending).get("Failed", [])}
            if not failed:
                break
            if attempt == 3:
                raise RuntimeError(f"the queue refused {len(failed)} entries")
            pending = [e for e in pending if e["Id"] in failed]
            time.sleep(0.05 * 2 ** attempt)


def handler(event, context):
    body = event.get("body") or ""
    raw = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    presented = headers.get("x-hub-signature-256", "")
    secret = app_secret().get("meta_app_secret")
    if not secret or not presented.startswith("sha256="):
        return answer(401, {"error": "invalid_signature"})
    expected = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, presented[len("sha256="):]):
        return answer(401, {"error": "invalid_signature"})
    try:
        payload = json.loads(raw)
    except ValueError as e:
        return answer(400, {"error": "malformed_json", "message": str(e)})
    received_at = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    events = envelopes(payload, received_at)
    send([entry(i, e) for i, e in enumerate(events)])
    return answer(200, {"status": "accepted", "enqueued": len(events)})
