//! Durations written the way people write them in YAML: `500ms`, `30s`, `5m`, `2h`, `7d`.

use std::fmt;
use std::time::Duration;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The pattern of a duration, shared by the schema and the parser.
pub const DURATION_PATTERN: &str = r"^[0-9]+(ms|s|m|h|d)$";

/// A duration parsed from `NUMBER UNIT` with unit `ms`, `s`, `m`, `h` or `d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration {
    value: Duration,
    text_unit: Unit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Unit {
    Millis,
    Secs,
    Mins,
    Hours,
    Days,
}

impl Unit {
    fn millis(self) -> u64 {
        match self {
            Unit::Millis => 1,
            Unit::Secs => 1_000,
            Unit::Mins => 60_000,
            Unit::Hours => 3_600_000,
            Unit::Days => 86_400_000,
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Unit::Millis => "ms",
            Unit::Secs => "s",
            Unit::Mins => "m",
            Unit::Hours => "h",
            Unit::Days => "d",
        }
    }
}

impl HumanDuration {
    pub const fn from_secs(secs: u64) -> Self {
        HumanDuration { value: Duration::from_secs(secs), text_unit: Unit::Secs }
    }

    pub fn get(self) -> Duration {
        self.value
    }

    /// Parses `500ms`, `30s`, `5m`, `2h` or `7d`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        let unit = match &text[digits.len()..] {
            "ms" => Unit::Millis,
            "s" => Unit::Secs,
            "m" => Unit::Mins,
            "h" => Unit::Hours,
            "d" => Unit::Days,
            _ => {
                return Err(format!(
                    "`{text}` is not a duration; write it like `500ms`, `30s`, `5m`, `2h` or `7d`"
                ))
            }
        };
        let count: u64 = digits
            .parse()
            .map_err(|_| format!("`{text}` does not start with a whole number, as in `30s`"))?;
        let millis = count
            .checked_mul(unit.millis())
            .ok_or_else(|| format!("`{text}` is too long a duration"))?;
        Ok(HumanDuration { value: Duration::from_millis(millis), text_unit: unit })
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.value.as_millis() as u64 / self.text_unit.millis();
        write!(f, "{count}{}", self.text_unit.suffix())
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        HumanDuration::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration: a whole number and a unit, `ms`, `s`, `m`, `h` or `d`, such as `30s`."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit_and_prints_it_back() {
        for (text, millis) in [("500ms", 500), ("30s", 30_000), ("5m", 300_000), ("2h", 7_200_000)]
        {
            let parsed = HumanDuration::parse(text).unwrap();
            assert_eq!(parsed.get(), Duration::from_millis(millis));
            assert_eq!(parsed.to_string(), text);
        }
    }

    #[test]
    fn refuses_what_the_pattern_refuses() {
        for text in ["", "30", "s", "1.5s", "-1s", "30 s", "3w"] {
            assert!(HumanDuration::parse(text).is_err(), "{text} should be refused");
        }
    }
}
