"""Schemathesis hooks for the send API fuzz runs (tests/api/schemathesis.rs).

Real ids: the fuzz workspace is seeded (a contact, a conversation with messages in and out, a
note, a quick reply) and `FUZZ_PATH_IDS` maps a path template to the seeded id for its `{id}`.
Path parameters are then either generated or that real id, so 200 bodies with data are checked
against the document too, not only 404s.

UTF-8 bodies only, when `FUZZ_UTF8_BODIES_ONLY` is set: `cargo lambda watch` answers a request
whose body is not valid UTF-8 with its own 500 before the function is invoked (API Gateway hands
such bodies to Lambda base64-encoded, and send-api answers them 400; tests/api/onboarding.rs
checks that in-process). Such bodies would only test the emulator, so they are not generated.
"""

import json
import os

import schemathesis
from hypothesis import strategies as st

_PATH_IDS = json.loads(os.environ.get("FUZZ_PATH_IDS", "{}"))
_UTF8_ONLY = bool(os.environ.get("FUZZ_UTF8_BODIES_ONLY"))


@schemathesis.hook
def flatmap_path_parameters(ctx, path_parameters):
    real = _PATH_IDS.get(ctx.operation.path) if ctx.operation else None
    if real is None or "id" not in path_parameters:
        return st.just(path_parameters)
    return st.sampled_from([{**path_parameters, "id": real}, path_parameters])


def _utf8(body):
    if isinstance(body, (bytes, bytearray)):
        try:
            bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            return False
    elif isinstance(body, str):
        try:
            body.encode("utf-8")
        except UnicodeEncodeError:
            return False
    return True


@schemathesis.hook
def filter_body(ctx, body):
    return not _UTF8_ONLY or _utf8(body)
