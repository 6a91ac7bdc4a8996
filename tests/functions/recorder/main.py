"""A test function for rowcast, served by Google's Functions Framework.

It appends every invocation it receives to the JSON Lines file named by RECORD_FILE
(one object per invocation: the payload plus the status it answered), then answers
according to the rows and to the control file named by CONTROL_FILE:

- a row whose `reject` column is a non-empty string is rejected with that reason;
- while the control file holds `fail`, every invocation gets a 500;
- while it holds `deny`, every invocation gets a 403;
- while it holds `slow N`, each invocation sleeps N milliseconds first.
"""

import fcntl
import json
import os
import time

import functions_framework


def _control():
    path = os.environ.get("CONTROL_FILE")
    if not path or not os.path.exists(path):
        return ""
    with open(path) as handle:
        return handle.read().strip()


def _record(entry):
    with open(os.environ["RECORD_FILE"], "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(json.dumps(entry) + "\n")
        handle.flush()
        fcntl.flock(handle, fcntl.LOCK_UN)


@functions_framework.http
def receive(request):
    payload = request.get_json(silent=True)
    control = _control()
    if control.startswith("slow "):
        time.sleep(int(control.split()[1]) / 1000)
    if control == "fail":
        _record({"status": 500, "payload": payload})
        return ("warehouse of the function is down", 500)
    if control == "deny":
        _record({"status": 403, "payload": payload})
        return ("Forbidden: missing invoker permission", 403)

    rows = payload.get("rows") or [payload.get("row")]
    key_column = payload["primary_key_column"]
    errors = [
        {"primary_key_value": str(row[key_column]), "reason": row["reject"]}
        for row in rows
        if isinstance(row.get("reject"), str) and row["reject"]
    ]
    _record({"status": 200, "payload": payload, "rejected": [e["primary_key_value"] for e in errors]})
    return {"errors": errors}
