//! Segment filters: a tree of `all` / `any` groups over contact conditions, parsed and checked
//! here, translated to SQL by the store (never evaluated row by row).
//!
//! JSON shape: `{"all": [ … ]}`, `{"any": [ … ]}`, or a condition
//! `{"field": "attributes.city", "op": "eq", "value": "Pune"}`.

use crate::FieldError;
use serde_json::Value;

pub const MAX_CONDITIONS: usize = 50;
pub const MAX_DEPTH: usize = 5;

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    All(Vec<Filter>),
    Any(Vec<Filter>),
    Cond(Condition),
}

/// What a condition looks at.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Name,
    Email,
    Phone,
    Language,
    Consent,
    Tag,
    CreatedAt,
    LastInboundAt,
    Birthday,
    /// `attributes.<key>`; keys are `[A-Za-z0-9_]{1,64}` so they can name a JSON path.
    Attribute(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Text equality (case-insensitive for name/email), or number/bool equality for attributes.
    Eq(Field, Value),
    Neq(Field, Value),
    Contains(Field, String),
    In(Field, Vec<Value>),
    Exists(Field, bool),
    /// Numeric comparisons on attributes: `gt`, `gte`, `lt`, `lte`.
    Cmp(Field, Cmp, f64),
    /// Dates: on or after / before an instant (RFC 3339 or `YYYY-MM-DD`). On an attribute, the
    /// day of an ISO 8601 value is compared with the instant's day (UTC); other values never match.
    After(Field, chrono::DateTime<chrono::Utc>),
    Before(Field, chrono::DateTime<chrono::Utc>),
    /// Dates within the last N days (evaluated when the segment is used).
    WithinDays(Field, i64),
    /// Tags.
    HasTag(String),
    HasNotTag(String),
    /// Birthday on `MM-DD`, whatever the year (matches `--MM-DD` birthdays too); `today` is
    /// resolved when the segment is used.
    BirthdayOn(MonthDay),
    /// Birthday in month `MM`.
    BirthdayMonth(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Cmp {
    pub fn sql(self) -> &'static str {
        match self {
            Cmp::Gt => ">",
            Cmp::Gte => ">=",
            Cmp::Lt => "<",
            Cmp::Lte => "<=",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MonthDay {
    Today,
    Fixed(String),
}

fn err(m: impl Into<String>) -> FieldError {
    FieldError::new("filter", m)
}

fn field(raw: &str) -> Result<Field, FieldError> {
    Ok(match raw {
        "name" => Field::Name,
        "email" => Field::Email,
        "phone" => Field::Phone,
        "language" => Field::Language,
        "consent" => Field::Consent,
        "tag" | "tags" => Field::Tag,
        "created_at" => Field::CreatedAt,
        "last_inbound_at" => Field::LastInboundAt,
        "birthday" => Field::Birthday,
        other => match other.strip_prefix("attributes.") {
            Some(k)
                if !k.is_empty()
                    && k.len() <= 64
                    && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                Field::Attribute(k.to_string())
            }
            _ => {
                return Err(err(format!(
                    "unknown field {other:?} (name, email, phone, language, consent, tag, created_at, last_inbound_at, birthday, attributes.<key>)"
                )));
            }
        },
    })
}

fn date(v: &Value) -> Result<chrono::DateTime<chrono::Utc>, FieldError> {
    let s = v.as_str().ok_or_else(|| err("a date must be a string"))?;
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
        .map_err(|_| err(format!("{s:?} is not a date (YYYY-MM-DD or RFC 3339)")))
}

fn days(v: &Value) -> Result<i64, FieldError> {
    v.as_i64()
        .filter(|d| (0..=3650).contains(d))
        .ok_or_else(|| err("within_days takes 0–3650"))
}

fn text(v: &Value) -> Result<String, FieldError> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| err("this condition takes a string value"))
}

impl Filter {
    pub fn parse(v: &Value) -> Result<Self, FieldError> {
        let mut count = 0;
        let f = Self::parse_at(v, 0, &mut count)?;
        if count == 0 {
            return Err(err("a filter needs at least one condition"));
        }
        Ok(f)
    }

    fn parse_at(v: &Value, depth: usize, count: &mut usize) -> Result<Self, FieldError> {
        if depth > MAX_DEPTH {
            return Err(err(format!("groups nest at most {MAX_DEPTH} deep")));
        }
        let obj = v.as_object().ok_or_else(|| err("each node is an object"))?;
        for (key, ctor) in [
            ("all", Filter::All as fn(Vec<Filter>) -> Filter),
            ("any", Filter::Any),
        ] {
            if let Some(list) = obj.get(key) {
                let items = list
                    .as_array()
                    .ok_or_else(|| err(format!("{key} takes a list")))?;
                if items.is_empty() {
                    return Err(err(format!("{key} needs at least one item")));
                }
                return items
                    .iter()
                    .map(|i| Self::parse_at(i, depth + 1, count))
                    .collect::<Result<_, _>>()
                    .map(ctor);
            }
        }
        *count += 1;
        if *count > MAX_CONDITIONS {
            return Err(err(format!("at most {MAX_CONDITIONS} conditions")));
        }
        let f = field(
            obj.get("field")
                .and_then(Value::as_str)
                .ok_or_else(|| err("a condition has a field"))?,
        )?;
        let op = obj
            .get("op")
            .and_then(Value::as_str)
            .ok_or_else(|| err("a condition has an op"))?;
        let value = obj.get("value").cloned().unwrap_or(Value::Null);
        let is_date = matches!(f, Field::CreatedAt | Field::LastInboundAt);
        let cond = match (op, &f) {
            ("has", Field::Tag) | ("eq", Field::Tag) => {
                Condition::HasTag(text(&value)?.trim().to_lowercase())
            }
            ("has_not", Field::Tag) | ("neq", Field::Tag) => {
                Condition::HasNotTag(text(&value)?.trim().to_lowercase())
            }
            (_, Field::Tag) => return Err(err("tag takes has or has_not")),
            ("month_day", Field::Birthday) => {
                let s = text(&value)?;
                if s == "today" {
                    Condition::BirthdayOn(MonthDay::Today)
                } else {
                    chrono::NaiveDate::parse_from_str(&format!("2000-{s}"), "%Y-%m-%d")
                        .map_err(|_| err("month_day is MM-DD or today"))?;
                    Condition::BirthdayOn(MonthDay::Fixed(s))
                }
            }
            ("month", Field::Birthday) => {
                let m = value
                    .as_u64()
                    .filter(|m| (1..=12).contains(m))
                    .ok_or_else(|| err("month is 1–12"))?;
                Condition::BirthdayMonth(m as u32)
            }
            // Attributes holding ISO 8601 dates (`2026-11-01`, or a timestamp) compare by day.
            ("after", Field::Attribute(_)) => Condition::After(f, date(&value)?),
            ("before", Field::Attribute(_)) => Condition::Before(f, date(&value)?),
            ("within_days", Field::Attribute(_)) => Condition::WithinDays(f, days(&value)?),
            ("after", _) if is_date => Condition::After(f, date(&value)?),
            ("before", _) if is_date => Condition::Before(f, date(&value)?),
            ("within_days", _) if is_date => Condition::WithinDays(f, days(&value)?),
            (_, _) if is_date && !matches!(op, "exists" | "not_exists") => {
                return Err(err("dates take after, before, within_days, exists"));
            }
            ("eq", _) => Condition::Eq(f, scalar(value)?),
            ("neq", _) => Condition::Neq(f, scalar(value)?),
            ("contains", _) => Condition::Contains(f, text(&value)?),
            ("in", _) => {
                let items = value
                    .as_array()
                    .filter(|a| !a.is_empty() && a.len() <= 500)
                    .ok_or_else(|| err("in takes a list of 1–500 values"))?;
                Condition::In(
                    f,
                    items
                        .iter()
                        .cloned()
                        .map(scalar)
                        .collect::<Result<_, _>>()?,
                )
            }
            ("exists", _) => Condition::Exists(f, true),
            ("not_exists", _) => Condition::Exists(f, false),
            ("gt" | "gte" | "lt" | "lte", Field::Attribute(_)) => {
                let n = value
                    .as_f64()
                    .ok_or_else(|| err("numeric comparisons take a number"))?;
                let c = match op {
                    "gt" => Cmp::Gt,
                    "gte" => Cmp::Gte,
                    "lt" => Cmp::Lt,
                    _ => Cmp::Lte,
                };
                Condition::Cmp(f, c, n)
            }
            (other, _) => return Err(err(format!("op {other:?} does not apply to this field"))),
        };
        Ok(Filter::Cond(cond))
    }
}

fn scalar(v: Value) -> Result<Value, FieldError> {
    match v {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(v),
        _ => Err(err("values are strings, numbers or booleans")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_trees() {
        let f = Filter::parse(&json!({"all": [
            {"field": "tag", "op": "has", "value": "VIP"},
            {"any": [{"field": "attributes.city", "op": "eq", "value": "Pune"}, {"field": "attributes.spend", "op": "gte", "value": 1000}]},
            {"field": "birthday", "op": "month_day", "value": "today"},
            {"field": "created_at", "op": "within_days", "value": 30}
        ]}))
        .unwrap();
        let Filter::All(items) = f else { panic!() };
        assert_eq!(items[0], Filter::Cond(Condition::HasTag("vip".into())));
        assert!(matches!(&items[1], Filter::Any(v) if v.len() == 2));
    }

    #[test]
    fn refuses_nonsense() {
        for bad in [
            json!({}),
            json!({"all": []}),
            json!({"field": "attributes.x;drop", "op": "eq", "value": 1}),
            json!({"field": "nope", "op": "eq", "value": 1}),
            json!({"field": "name", "op": "gt", "value": 1}),
            json!({"field": "created_at", "op": "eq", "value": "x"}),
            json!({"field": "birthday", "op": "month_day", "value": "13-01"}),
            json!({"field": "tag", "op": "contains", "value": "x"}),
            json!({"field": "attributes.a", "op": "in", "value": []}),
        ] {
            assert!(Filter::parse(&bad).is_err(), "{bad}");
        }
        let mut deep = json!({"field": "name", "op": "exists"});
        for _ in 0..7 {
            deep = json!({"all": [deep]});
        }
        assert!(Filter::parse(&deep).is_err());
    }
}
