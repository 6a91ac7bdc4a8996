//! DuckDB column types, parsed from the text DuckDB prints for them (`DESCRIBE`), so the
//! JSON mapping can be generated for nested types: `INTEGER[]`, `VARCHAR[3]`,
//! `STRUCT(a INTEGER, "b c" DATE[])`, `MAP(VARCHAR, DOUBLE)`, `UNION(n INTEGER, s VARCHAR)`,
//! `ENUM('a', 'b')`, `DECIMAL(12,2)`.

use std::fmt;

/// A DuckDB type, as far as the JSON mapping needs to tell types apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DuckType {
    Boolean,
    /// Signed or unsigned integers that always fit in 2^53: TINYINT to INTEGER, UTINYINT
    /// to UINTEGER.
    SmallInt,
    /// Integers that may pass 2^53: BIGINT, UBIGINT, HUGEINT, UHUGEINT.
    BigInt,
    /// Arbitrary-size integers (VARINT, BIGNUM).
    VarInt,
    Decimal {
        width: u32,
        scale: u32,
    },
    Float,
    Varchar,
    Enum,
    Uuid,
    Blob,
    Bit,
    Date,
    Time,
    TimeTz,
    Timestamp,
    TimestampTz,
    Interval,
    /// The type of an untyped NULL.
    Null,
    List(Box<DuckType>),
    Array(Box<DuckType>, u64),
    Struct(Vec<(String, DuckType)>),
    Map(Box<DuckType>, Box<DuckType>),
    Union(Vec<(String, DuckType)>),
    /// A type the mapping does not know, sent as its text form.
    Other(String),
}

/// A type text DuckDB printed that this parser does not follow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read the DuckDB type `{text}`: {reason}")]
pub struct TypeParseError {
    pub text: String,
    pub reason: String,
}

impl DuckType {
    /// Parses a type as DuckDB prints it.
    pub fn parse(text: &str) -> Result<DuckType, TypeParseError> {
        let mut parser = TypeParser { text, rest: text };
        let parsed = parser.ty()?;
        parser.skip_space();
        if !parser.rest.is_empty() {
            return Err(parser.error("unexpected text after the type"));
        }
        Ok(parsed)
    }

    fn named(name: &str) -> DuckType {
        let upper = name.to_ascii_uppercase();
        match upper.as_str() {
            "BOOLEAN" | "BOOL" => DuckType::Boolean,
            "TINYINT" | "SMALLINT" | "INTEGER" | "INT" | "UTINYINT" | "USMALLINT" | "UINTEGER" => {
                DuckType::SmallInt
            }
            "BIGINT" | "UBIGINT" | "HUGEINT" | "UHUGEINT" => DuckType::BigInt,
            "VARINT" | "BIGNUM" => DuckType::VarInt,
            "FLOAT" | "REAL" | "DOUBLE" => DuckType::Float,
            "VARCHAR" | "STRING" | "TEXT" => DuckType::Varchar,
            "UUID" => DuckType::Uuid,
            "BLOB" | "BYTEA" => DuckType::Blob,
            "BIT" | "BITSTRING" => DuckType::Bit,
            "DATE" => DuckType::Date,
            "TIME" | "TIME_NS" => DuckType::Time,
            "TIME WITH TIME ZONE" | "TIMETZ" => DuckType::TimeTz,
            "TIMESTAMP" | "TIMESTAMP_S" | "TIMESTAMP_MS" | "TIMESTAMP_NS" | "DATETIME" => {
                DuckType::Timestamp
            }
            "TIMESTAMP WITH TIME ZONE" | "TIMESTAMPTZ" => DuckType::TimestampTz,
            "INTERVAL" => DuckType::Interval,
            "NULL" | "\"NULL\"" => DuckType::Null,
            _ => DuckType::Other(name.to_string()),
        }
    }
}

impl fmt::Display for DuckType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

struct TypeParser<'a> {
    text: &'a str,
    rest: &'a str,
}

impl<'a> TypeParser<'a> {
    fn error(&self, reason: &str) -> TypeParseError {
        TypeParseError { text: self.text.to_string(), reason: reason.to_string() }
    }

    fn skip_space(&mut self) {
        self.rest = self.rest.trim_start();
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_space();
        match self.rest.strip_prefix(token) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn expect(&mut self, token: &str) -> Result<(), TypeParseError> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(self.error(&format!("expected `{token}`")))
        }
    }

    /// A type followed by any number of `[]` and `[N]`.
    fn ty(&mut self) -> Result<DuckType, TypeParseError> {
        let mut base = self.base()?;
        while self.eat("[") {
            if self.eat("]") {
                base = DuckType::List(Box::new(base));
                continue;
            }
            let size = self.word();
            let size = size.parse().map_err(|_| self.error("expected an array size"))?;
            self.expect("]")?;
            base = DuckType::Array(Box::new(base), size);
        }
        Ok(base)
    }

    fn base(&mut self) -> Result<DuckType, TypeParseError> {
        let name = self.type_name();
        let upper = name.to_ascii_uppercase();
        if !self.peek_paren() {
            return Ok(DuckType::named(&name));
        }
        self.expect("(")?;
        let parsed = match upper.as_str() {
            "STRUCT" => DuckType::Struct(self.fields()?),
            "UNION" => DuckType::Union(self.fields()?),
            "MAP" => {
                let key = self.ty()?;
                self.expect(",")?;
                let value = self.ty()?;
                DuckType::Map(Box::new(key), Box::new(value))
            }
            "DECIMAL" | "NUMERIC" => {
                let width = self.word().parse().map_err(|_| self.error("expected a width"))?;
                let scale = if self.eat(",") {
                    self.word().parse().map_err(|_| self.error("expected a scale"))?
                } else {
                    0
                };
                DuckType::Decimal { width, scale }
            }
            "ENUM" => {
                self.skip_balanced()?;
                return Ok(DuckType::Enum);
            }
            _ => {
                self.skip_balanced()?;
                return Ok(DuckType::Other(name));
            }
        };
        self.expect(")")?;
        Ok(parsed)
    }

    fn peek_paren(&mut self) -> bool {
        self.skip_space();
        self.rest.starts_with('(')
    }

    /// A type name, which may be several words (`TIMESTAMP WITH TIME ZONE`).
    fn type_name(&mut self) -> String {
        let mut words = vec![self.word()];
        for tail in [" WITH TIME ZONE"] {
            if self.rest.to_ascii_uppercase().starts_with(tail) {
                self.rest = &self.rest[tail.len()..];
                words.push(tail.trim().to_string());
            }
        }
        words.join(" ")
    }

    /// A bare word or a double-quoted name.
    fn word(&mut self) -> String {
        self.skip_space();
        if let Some(quoted) = self.rest.strip_prefix('"') {
            let mut name = String::new();
            let mut chars = quoted.char_indices().peekable();
            while let Some((index, c)) = chars.next() {
                if c == '"' {
                    if chars.peek().map(|(_, n)| *n) == Some('"') {
                        chars.next();
                        name.push('"');
                        continue;
                    }
                    self.rest = &quoted[index + 1..];
                    return name;
                }
                name.push(c);
            }
            self.rest = "";
            return name;
        }
        let end = self
            .rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(self.rest.len());
        let (word, rest) = self.rest.split_at(end);
        self.rest = rest;
        word.to_string()
    }

    /// `name TYPE, name TYPE` up to (not including) the closing parenthesis.
    fn fields(&mut self) -> Result<Vec<(String, DuckType)>, TypeParseError> {
        let mut fields = Vec::new();
        loop {
            let name = self.word();
            let ty = self.ty()?;
            fields.push((name, ty));
            if !self.eat(",") {
                return Ok(fields);
            }
        }
    }

    /// Skips to the parenthesis that closes the one just opened, minding quotes.
    fn skip_balanced(&mut self) -> Result<(), TypeParseError> {
        let mut depth = 1;
        let mut quote: Option<char> = None;
        for (index, c) in self.rest.char_indices() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '(') => depth += 1,
                (None, ')') => {
                    depth -= 1;
                    if depth == 0 {
                        self.rest = &self.rest[index + 1..];
                        return Ok(());
                    }
                }
                _ => {}
            }
        }
        Err(self.error("unbalanced parentheses"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_types() {
        let parsed =
            DuckType::parse(r#"STRUCT(a INTEGER, "b ""c""" DATE[], m MAP(VARCHAR, DOUBLE[2]))"#)
                .unwrap();
        let expected = DuckType::Struct(vec![
            ("a".into(), DuckType::SmallInt),
            ("b \"c\"".into(), DuckType::List(Box::new(DuckType::Date))),
            (
                "m".into(),
                DuckType::Map(
                    Box::new(DuckType::Varchar),
                    Box::new(DuckType::Array(Box::new(DuckType::Float), 2)),
                ),
            ),
        ]);
        assert_eq!(parsed, expected);
    }

    #[test]
    fn parses_scalar_types() {
        assert_eq!(
            DuckType::parse("DECIMAL(12,2)").unwrap(),
            DuckType::Decimal { width: 12, scale: 2 }
        );
        assert_eq!(DuckType::parse("TIMESTAMP WITH TIME ZONE").unwrap(), DuckType::TimestampTz);
        assert_eq!(DuckType::parse("ENUM('a', 'b)c')").unwrap(), DuckType::Enum);
        assert_eq!(DuckType::parse("UHUGEINT").unwrap(), DuckType::BigInt);
        assert_eq!(
            DuckType::parse("UNION(n INTEGER, s VARCHAR)").unwrap(),
            DuckType::Union(vec![
                ("n".into(), DuckType::SmallInt),
                ("s".into(), DuckType::Varchar)
            ])
        );
    }
}
