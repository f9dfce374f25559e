"""Schemathesis hooks for the send API fuzz run (tests/api/schemathesis.rs).

`cargo lambda watch` answers a request whose body is not valid UTF-8 with its own 500 before
the function is invoked (API Gateway hands such bodies to Lambda base64-encoded, and send-api
answers them 400; tests/api/onboarding.rs checks that in-process). Such bodies would only test
the emulator, so they are not generated.
"""

import schemathesis


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
    return _utf8(body)
