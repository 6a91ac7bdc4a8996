//! The one mapping from DuckDB values to JSON, used for payloads and fingerprints alike.
//! It is generated as a SQL expression per column, so rows are turned into JSON text
//! inside DuckDB, in bulk, without passing through Rust.
//!
//! | DuckDB type | JSON |
//! |---|---|
//! | NULL of any type | `null` |
//! | BOOLEAN | `true` / `false` |
//! | TINYINT … INTEGER, UTINYINT … UINTEGER | number |
//! | BIGINT, UBIGINT, HUGEINT, UHUGEINT | number within ±(2^53−1), else a string of digits |
//! | VARINT | string of digits |
//! | DECIMAL(w,s) | number with exactly `s` decimals when `w` ≤ 15, else a string |
//! | FLOAT, DOUBLE | number; `"NaN"`, `"Infinity"`, `"-Infinity"` as strings |
//! | VARCHAR, ENUM | string |
//! | UUID | string, lowercase with hyphens |
//! | BLOB | string, base64 |
//! | BIT | string of `0` and `1` |
//! | DATE | string `YYYY-MM-DD` |
//! | TIME, TIMETZ | string `HH:MM:SS[.ffffff][+HH]` |
//! | TIMESTAMP (any precision) | string `YYYY-MM-DDTHH:MM:SS[.f]`, no offset |
//! | TIMESTAMPTZ | string, RFC 3339 in UTC: `YYYY-MM-DDTHH:MM:SS[.f]Z` |
//! | INTERVAL | object `{"months":m,"days":d,"micros":u}` |
//! | LIST, ARRAY | array |
//! | STRUCT | object, fields in declared order |
//! | MAP | object; keys are the keys' text forms |
//! | UNION | object with one member, named by the tag: `{"tag": value}` |
//! | anything else | string of DuckDB's text form |
//!
//! A row is an object of its columns in name order, so reordering a model's `SELECT` does
//! not change any fingerprint.

use super::types::DuckType;

/// The SQL expression of a row's fingerprint: the MD5 of its JSON text, as a 128-bit
/// number. Every fingerprint is computed by this one expression, inside DuckDB, so a row
/// is fingerprinted the same way when it is planned and when it is committed.
pub fn fingerprint_sql(row_json: &str) -> String {
    format!("CAST(md5_number({row_json}) AS UHUGEINT)")
}

/// Largest integer a JSON parser that uses doubles reads exactly.
const MAX_SAFE_INTEGER: &str = "9007199254740991";

/// A SQL expression giving the JSON text of a row with these columns, read from the
/// relation alias `alias`. Never NULL.
pub fn row_json_sql(alias: &str, columns: &[(String, DuckType)]) -> String {
    let mut sorted: Vec<&(String, DuckType)> = columns.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let fields: Vec<(String, String)> = sorted
        .iter()
        .map(|(name, _)| (name.clone(), format!("{alias}.{}", quote_identifier(name))))
        .collect();
    object_sql(&fields, columns_types(&sorted), 0)
}

fn columns_types<'a>(columns: &[&'a (String, DuckType)]) -> Vec<&'a DuckType> {
    columns.iter().map(|(_, ty)| ty).collect()
}

/// `{"a":…,"b":…}` from field expressions; NULL-safe for each field.
fn object_sql(fields: &[(String, String)], types: Vec<&DuckType>, depth: usize) -> String {
    if fields.is_empty() {
        return "'{}'".to_string();
    }
    let mut parts = Vec::new();
    for (index, ((name, expr), ty)) in fields.iter().zip(types).enumerate() {
        let separator = if index == 0 { "{" } else { "," };
        let key = serde_json::to_string(name).expect("a string always serializes");
        parts.push(quote_literal(&format!("{separator}{key}:")));
        parts.push(value_sql(expr, ty, depth));
    }
    parts.push("'}'".to_string());
    // One `concat` of every part builds the text in one allocation, where a chain of `||`
    // would build a new string per part. No part is NULL: each value is coalesced.
    format!("concat({})", parts.join(", "))
}

/// The JSON text of one value, `null` when it is NULL.
pub fn value_sql(expr: &str, ty: &DuckType, depth: usize) -> String {
    format!("coalesce({}, 'null')", nullable_sql(expr, ty, depth))
}

/// The JSON text of one value, or SQL NULL when it is NULL (string concatenation with
/// NULL is NULL, which lets each case stay short).
fn nullable_sql(x: &str, ty: &DuckType, depth: usize) -> String {
    let text = format!("CAST({x} AS VARCHAR)");
    let quoted = format!("'\"' || {text} || '\"'");
    match ty {
        DuckType::Boolean | DuckType::SmallInt => text,
        // Compared as a DOUBLE, which holds every integer up to 2^53 exactly, since DuckDB
        // compares UHUGEINT with a negative literal by casting it to HUGEINT, which fails
        // above 2^127.
        DuckType::BigInt => format!(
            "CASE WHEN CAST({x} AS DOUBLE) BETWEEN -{MAX_SAFE_INTEGER} AND {MAX_SAFE_INTEGER} \
             THEN {text} ELSE {quoted} END"
        ),
        DuckType::Decimal { width, .. } if *width <= 15 => text,
        DuckType::Decimal { .. } | DuckType::VarInt | DuckType::Uuid | DuckType::Bit => quoted,
        DuckType::Date | DuckType::Time | DuckType::TimeTz => quoted,
        DuckType::Float => format!(
            "CASE WHEN isnan({x}) THEN '\"NaN\"' WHEN {x} = 'infinity'::DOUBLE THEN \
             '\"Infinity\"' WHEN {x} = '-infinity'::DOUBLE THEN '\"-Infinity\"' ELSE {text} END"
        ),
        DuckType::Varchar | DuckType::Enum | DuckType::Other(_) => {
            format!("CAST(to_json({text}) AS VARCHAR)")
        }
        DuckType::Blob => format!("'\"' || to_base64({x}) || '\"'"),
        DuckType::Timestamp => format!("'\"' || replace({text}, ' ', 'T') || '\"'"),
        DuckType::TimestampTz => {
            format!("'\"' || replace(CAST(CAST({x} AS TIMESTAMP) AS VARCHAR), ' ', 'T') || 'Z\"'")
        }
        DuckType::Interval => format!(
            "'{{\"months\":' || CAST(datepart('year', {x}) * 12 + datepart('month', {x}) AS \
             VARCHAR) || ',\"days\":' || CAST(datepart('day', {x}) AS VARCHAR) || \
             ',\"micros\":' || CAST(CAST(datepart('hour', {x}) AS BIGINT) * 3600000000 + \
             CAST(datepart('minute', {x}) AS BIGINT) * 60000000 + \
             datepart('microseconds', {x}) AS VARCHAR) || '}}'"
        ),
        DuckType::Null => "NULL".to_string(),
        DuckType::List(element) => list_sql(x, element, depth),
        // List functions take fixed-size arrays as they are.
        DuckType::Array(element, _) => list_sql(x, element, depth),
        DuckType::Struct(fields) => {
            let exprs: Vec<(String, String)> = fields
                .iter()
                .map(|(name, _)| {
                    (name.clone(), format!("struct_extract({x}, {})", quote_literal(name)))
                })
                .collect();
            let types = fields.iter().map(|(_, ty)| ty).collect();
            format!("CASE WHEN {x} IS NULL THEN NULL ELSE {} END", object_sql(&exprs, types, depth))
        }
        DuckType::Map(key, value) => {
            let e = format!("e{depth}");
            let key_text = map_key_sql(&format!("{e}.key"), key);
            let value_text = value_sql(&format!("{e}.value"), value, depth + 1);
            format!(
                "'{{' || array_to_string(list_transform(map_entries({x}), lambda {e}: \
                 {key_text} || ':' || {value_text}), ',') || '}}'"
            )
        }
        DuckType::Union(members) => {
            let arms: Vec<String> = members
                .iter()
                .map(|(tag, ty)| {
                    let key = serde_json::to_string(tag).expect("a string always serializes");
                    let inner = value_sql(
                        &format!("union_extract({x}, {})", quote_literal(tag)),
                        ty,
                        depth,
                    );
                    format!(
                        "WHEN {} THEN {} || {inner} || '}}'",
                        quote_literal(tag),
                        quote_literal(&format!("{{{key}:"))
                    )
                })
                .collect();
            format!("CASE CAST(union_tag({x}) AS VARCHAR) {} END", arms.join(" "))
        }
    }
}

fn list_sql(x: &str, element: &DuckType, depth: usize) -> String {
    let e = format!("e{depth}");
    let inner = value_sql(&e, element, depth + 1);
    format!("'[' || array_to_string(list_transform({x}, lambda {e}: {inner}), ',') || ']'")
}

/// Map keys become JSON object keys, which are strings: the key's text form.
fn map_key_sql(x: &str, ty: &DuckType) -> String {
    match ty {
        DuckType::Varchar | DuckType::Enum => {
            format!("CAST(to_json(CAST({x} AS VARCHAR)) AS VARCHAR)")
        }
        _ => format!("CAST(to_json(coalesce(CAST({x} AS VARCHAR), 'null')) AS VARCHAR)"),
    }
}

/// The canonical text of a primary key: DuckDB's own text form of the value (`42`,
/// `2024-05-01`, `0b1f…` for UUIDs). A function's `primary_key_value` refers to it.
pub fn key_sql(x: &str) -> String {
    format!("CAST({x} AS VARCHAR)")
}

/// Quotes an identifier for SQL: `"name"`, with inner quotes doubled.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal for SQL: `'text'`, with inner quotes doubled.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
