// An example rowcast function, for Google Cloud Functions (Node.js runtime).
//
// rowcast POSTs one invocation per request: the `operation` (added, changed or removed),
// the `primary_key_column`, the `row` (or `rows` in batch mode) and `metadata` with the
// idempotency key of each row change. The function does its work for each row and answers
// with the rows it rejects, {"errors": [{"primary_key_value": ..., "reason": ...}]};
// every row it does not list is acknowledged and will not be sent again.
//
// Run it locally:  npx functions-framework --target=handleRows --port=8080
// Deploy it:       see the README section "Writing a function".

const functions = require('@google-cloud/functions-framework');

// Idempotency: a change already handled is acknowledged again without doing the work
// twice. An instance's memory is enough to show the idea; a deployed function keeps the
// keys where every instance sees them (Firestore, Memorystore, a unique index).
const done = new Set();

// Why a row cannot be handled, or null.
function problem(row) {
  if ('email' in row && !row.email) {
    return 'the row has no email address';
  }
  if ('work_email' in row && !String(row.work_email).endsWith('@acme.example')) {
    return 'the work email is not an acme.example address';
  }
  return null;
}

// The work itself: here, a log line per row.
function handle(operation, row) {
  console.log(`${operation}: ${JSON.stringify(row)}`);
}

functions.http('handleRows', (req, res) => {
  // `rowcast check` probes with a GET and no body: answer it without doing any work.
  if (req.method === 'GET') {
    res.status(200).json({ errors: [] });
    return;
  }

  const payload = req.body;
  if (!payload || typeof payload !== 'object' || !('operation' in payload)) {
    res.status(400).json({ error: 'expected a rowcast payload' });
    return;
  }

  const { operation, primary_key_column: keyColumn, metadata } = payload;
  const batch = Array.isArray(payload.rows);
  const rows = batch ? payload.rows : [payload.row];
  const keys = batch ? metadata.idempotency_keys : [metadata.idempotency_key];

  const errors = [];
  rows.forEach((row, index) => {
    const key = keys[index];
    if (done.has(key)) {
      return;
    }
    const reason = operation === 'removed' ? null : problem(row);
    if (reason) {
      errors.push({ primary_key_value: String(row[keyColumn]), reason });
      return;
    }
    handle(operation, row);
    done.add(key);
  });
  res.status(200).json({ errors });
});
