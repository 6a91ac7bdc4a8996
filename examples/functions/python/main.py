"""An example rowcast function, for Google Cloud Functions (Python runtime).

rowcast POSTs one invocation per request: the `operation` (added, changed or removed),
the `primary_key_column`, the `row` (or `rows` in batch mode) and `metadata` with the
idempotency key of each row change. The function does its work for each row and answers
with the rows it rejects, `{"errors": [{"primary_key_value": ..., "reason": ...}]}`;
every row it does not list is acknowledged and will not be sent again.

Run it locally:  functions-framework --target handle_rows --source main.py --port 8080
Deploy it:       see the README section "Writing a function".
"""

import functions_framework

# Idempotency: a change already handled is acknowledged again without doing the work
# twice. An instance's memory is enough to show the idea; a deployed function keeps the
# keys where every instance sees them (Firestore, Memorystore, a unique index).
_done = set()


def _problem(row):
    """Why a row cannot be handled, or None."""
    if "email" in row and not row["email"]:
        return "the row has no email address"
    if "work_email" in row and not str(row["work_email"]).endswith("@acme.example"):
        return "the work email is not an acme.example address"
    return None


def _handle(operation, row):
    """The work itself: here, a log line per row."""
    print(f"{operation}: {row}")


@functions_framework.http
def handle_rows(request):
    # `rowcast check` probes with a GET and no body: answer it without doing any work.
    if request.method == "GET":
        return {"errors": []}

    payload = request.get_json(silent=True)
    if not payload or "operation" not in payload:
        return ({"error": "expected a rowcast payload"}, 400)

    operation = payload["operation"]
    key_column = payload["primary_key_column"]
    metadata = payload["metadata"]
    if "rows" in payload:
        rows = payload["rows"]
        keys = metadata["idempotency_keys"]
    else:
        rows = [payload["row"]]
        keys = [metadata["idempotency_key"]]

    errors = []
    for row, key in zip(rows, keys):
        if key in _done:
            continue
        problem = _problem(row) if operation != "removed" else None
        if problem:
            errors.append({"primary_key_value": str(row[key_column]), "reason": problem})
            continue
        _handle(operation, row)
        _done.add(key)
    return {"errors": errors}
