//! Money, prices and plans: the rules of the prepaid wallet that need no I/O.
//!
//! Amounts are exact: an integer count of ten-thousandths of the operator's currency unit
//! ([`Money`]), so a price of ₹0.7846 per message is representable and sums never drift. At the
//! edge they are written as decimal numbers (`12.5`, `"0.7846"`) and parsed from their text, never
//! through a float.

use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, fmt, str::FromStr};

use crate::FieldError;

/// Decimal places kept: 1 unit = 0.0001 of the currency.
pub const SCALE: i64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(pub i64);

impl Money {
    pub const ZERO: Money = Money(0);

    pub fn units(self) -> i64 {
        self.0
    }

    /// Parses a decimal with at most four places (`"12"`, `"-3.5"`, `"0.0001"`).
    pub fn parse(raw: &str) -> Result<Money, String> {
        let s = raw.trim();
        let (neg, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let ok = |p: &str| p.chars().all(|c| c.is_ascii_digit());
        if (int.is_empty() && frac.is_empty()) || !ok(int) || !ok(frac) {
            return Err(format!("{raw:?} is not a decimal amount"));
        }
        if frac.len() > 4 {
            return Err("at most 4 decimal places".into());
        }
        let int: i64 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| "is too large".to_string())?
        };
        let frac: i64 = format!("{frac:0<4}").parse().unwrap_or(0);
        let units = int
            .checked_mul(SCALE)
            .and_then(|v| v.checked_add(frac))
            .filter(|v| *v <= 1_000_000_000_000 * SCALE)
            .ok_or_else(|| "is too large".to_string())?;
        Ok(Money(if neg { -units } else { units }))
    }

    /// From a JSON number or string, exactly as written.
    pub fn from_json(field: &'static str, v: &serde_json::Value) -> Result<Money, FieldError> {
        let text = match v {
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::String(s) => s.clone(),
            _ => return Err(FieldError::new(field, "must be a decimal number")),
        };
        Money::parse(&text).map_err(|m| FieldError::new(field, m))
    }
}

impl fmt::Display for Money {
    /// `12.5`, `0.7846`, `-3`: the shortest exact decimal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let a = self.0.unsigned_abs();
        let (int, frac) = (a / SCALE as u64, a % SCALE as u64);
        if frac == 0 {
            write!(f, "{sign}{int}")
        } else {
            let frac = format!("{frac:04}");
            write!(f, "{sign}{int}.{}", frac.trim_end_matches('0'))
        }
    }
}

impl std::ops::Add for Money {
    type Output = Money;
    fn add(self, o: Money) -> Money {
        Money(self.0 + o.0)
    }
}

impl std::ops::Sub for Money {
    type Output = Money;
    fn sub(self, o: Money) -> Money {
        Money(self.0 - o.0)
    }
}

impl std::iter::Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        Money(iter.map(|m| m.0).sum())
    }
}

/// Written as a JSON number whose text is the exact decimal (`0.7846`, never `0.78459999`).
impl Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // The shortest round-trip form of the nearest double prints the same decimal back for
        // every amount with at most four places below 2^53 / 10^4.
        s.serialize_f64(self.0 as f64 / SCALE as f64)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Money, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        Money::from_json("amount", &v).map_err(|e| serde::de::Error::custom(e.message))
    }
}

impl utoipa::PartialSchema for Money {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Number)
            .description(Some(
                "An exact decimal amount in the operator's currency, at most 4 places (a JSON number or a string).",
            ))
            .examples([serde_json::json!(12.5)])
            .into()
    }
}
impl utoipa::ToSchema for Money {}

/// What a message is billed as: Meta's template categories, and `service` for free-form replies.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Marketing,
    Utility,
    Authentication,
    Service,
}

impl Category {
    pub const ALL: [Category; 4] = [
        Category::Marketing,
        Category::Utility,
        Category::Authentication,
        Category::Service,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Marketing => "marketing",
            Category::Utility => "utility",
            Category::Authentication => "authentication",
            Category::Service => "service",
        }
    }

    /// From a template's category as Meta writes it (`MARKETING`, …).
    pub fn of_template(category: &str) -> Category {
        category.parse().unwrap_or(Category::Utility)
    }
}

impl FromStr for Category {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "marketing" => Ok(Category::Marketing),
            "utility" => Ok(Category::Utility),
            "authentication" => Ok(Category::Authentication),
            "service" => Ok(Category::Service),
            other => Err(format!("unknown category {other:?}")),
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A price per category; a category left out costs what the default says (or nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Prices {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marketing: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utility: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<Money>,
}

impl Prices {
    pub fn get(&self, c: Category) -> Option<Money> {
        match c {
            Category::Marketing => self.marketing,
            Category::Utility => self.utility,
            Category::Authentication => self.authentication,
            Category::Service => self.service,
        }
    }

    fn check(&self, field: &'static str) -> Result<(), FieldError> {
        for c in Category::ALL {
            if self.get(c).is_some_and(|p| p.0 < 0) {
                return Err(FieldError::new(field, "prices cannot be negative"));
            }
        }
        Ok(())
    }
}

/// The operator's price list: a default per category, and overrides per recipient country by
/// calling-code prefix (`"91"`, `"1"`, `"44"`); the longest matching prefix wins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PriceList {
    /// ISO 4217 code of the operator's currency.
    pub currency: String,
    #[serde(default)]
    pub default: Prices,
    #[serde(default)]
    pub countries: BTreeMap<String, Prices>,
}

impl PriceList {
    pub fn empty(currency: &str) -> PriceList {
        PriceList {
            currency: currency.to_string(),
            ..Default::default()
        }
    }

    /// Checks what an operator sent: a 3-letter currency, digit-only prefixes, no negatives.
    pub fn check(mut self) -> Result<PriceList, FieldError> {
        self.currency = self.currency.trim().to_ascii_uppercase();
        if self.currency.len() != 3 || !self.currency.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(FieldError::new(
                "currency",
                "must be a 3-letter ISO 4217 code",
            ));
        }
        self.default.check("default")?;
        let mut countries = BTreeMap::new();
        for (prefix, p) in self.countries {
            let k = prefix.trim().trim_start_matches('+').to_string();
            if k.is_empty() || k.len() > 6 || !k.chars().all(|c| c.is_ascii_digit()) {
                return Err(FieldError::new(
                    "countries",
                    format!("{prefix:?} is not a calling-code prefix (digits, e.g. \"91\")"),
                ));
            }
            p.check("countries")?;
            countries.insert(k, p);
        }
        self.countries = countries;
        Ok(self)
    }

    /// The price of one message of `category` to `phone` (E.164, with or without `+`).
    pub fn price(&self, category: Category, phone: &str) -> Money {
        let digits = phone.trim_start_matches('+');
        self.countries
            .iter()
            .filter(|(prefix, p)| digits.starts_with(prefix.as_str()) && p.get(category).is_some())
            .max_by_key(|(prefix, _)| prefix.len())
            .and_then(|(_, p)| p.get(category))
            .or(self.default.get(category))
            .unwrap_or(Money::ZERO)
    }

    /// Whether any message costs anything (when none does, sending skips the wallet).
    pub fn charges(&self) -> bool {
        std::iter::once(&self.default)
            .chain(self.countries.values())
            .any(|p| {
                Category::ALL
                    .iter()
                    .any(|c| p.get(*c).is_some_and(|m| m.0 > 0))
            })
    }
}

/// A plan's limits; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Limits {
    pub contacts: Option<i64>,
    pub team_members: Option<i64>,
    pub sending_numbers: Option<i64>,
    pub messages_per_month: Option<i64>,
    /// API requests per minute for the tenant's credentials.
    pub api_requests_per_minute: Option<i64>,
}

/// Which limit a request ran into, for the `plan_limit_reached` error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Contacts,
    TeamMembers,
    SendingNumbers,
    MessagesPerMonth,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Contacts => "contacts",
            Limit::TeamMembers => "team_members",
            Limit::SendingNumbers => "sending_numbers",
            Limit::MessagesPerMonth => "messages_per_month",
        }
    }
}

impl Limits {
    pub fn of(&self, l: Limit) -> Option<i64> {
        match l {
            Limit::Contacts => self.contacts,
            Limit::TeamMembers => self.team_members,
            Limit::SendingNumbers => self.sending_numbers,
            Limit::MessagesPerMonth => self.messages_per_month,
        }
    }

    pub fn check(&self) -> Result<(), FieldError> {
        for (name, v) in [
            ("contacts", self.contacts),
            ("team_members", self.team_members),
            ("sending_numbers", self.sending_numbers),
            ("messages_per_month", self.messages_per_month),
            ("api_requests_per_minute", self.api_requests_per_minute),
        ] {
            if v.is_some_and(|v| v < 0) {
                return Err(FieldError::new(
                    "limits",
                    format!("{name} cannot be negative"),
                ));
            }
        }
        Ok(())
    }
}

/// The calendar month (UTC) an instant falls in, as `YYYY-MM`: usage periods.
pub fn period_of(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m").to_string()
}

/// The first instant of a `YYYY-MM` period and of the next one.
pub fn period_bounds(
    period: &str,
) -> Option<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)> {
    use chrono::{Datelike, NaiveDate, TimeZone, Utc};
    let start = NaiveDate::parse_from_str(&format!("{period}-01"), "%Y-%m-%d").ok()?;
    let next = if start.month() == 12 {
        NaiveDate::from_ymd_opt(start.year() + 1, 1, 1)?
    } else {
        NaiveDate::from_ymd_opt(start.year(), start.month() + 1, 1)?
    };
    Some((
        Utc.from_utc_datetime(&start.and_hms_opt(0, 0, 0)?),
        Utc.from_utc_datetime(&next.and_hms_opt(0, 0, 0)?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_parses_and_prints_exactly() {
        assert_eq!(Money::parse("12").unwrap(), Money(120_000));
        assert_eq!(Money::parse("0.7846").unwrap(), Money(7_846));
        assert_eq!(Money::parse("-3.5").unwrap(), Money(-35_000));
        assert_eq!(Money::parse(".5").unwrap(), Money(5_000));
        assert!(Money::parse("0.00001").is_err());
        assert!(Money::parse("1e3").is_err());
        assert!(Money::parse("").is_err());
        assert!(Money::parse("99999999999999999999").is_err());
        assert_eq!(Money(7_846).to_string(), "0.7846");
        assert_eq!(Money(-35_000).to_string(), "-3.5");
        assert_eq!(Money(120_000).to_string(), "12");
        let v = serde_json::to_value(Money(7_846)).unwrap();
        assert_eq!(v.to_string(), "0.7846");
        let m: Money = serde_json::from_str("0.1").unwrap();
        assert_eq!(m, Money(1_000));
        let m: Money = serde_json::from_str("\"100.25\"").unwrap();
        assert_eq!(m, Money(1_002_500));
    }

    #[test]
    fn longest_prefix_wins_then_default_then_free() {
        let list: PriceList = serde_json::from_value(serde_json::json!({
            "currency": "inr",
            "default": {"marketing": 1, "utility": 0.2},
            "countries": {"91": {"marketing": 0.78}, "+9198": {"marketing": 0.5}, "1": {"utility": 0.1}}
        }))
        .unwrap();
        let list = list.check().unwrap();
        assert_eq!(list.currency, "INR");
        assert_eq!(
            list.price(Category::Marketing, "+919812345678"),
            Money(5_000)
        );
        assert_eq!(
            list.price(Category::Marketing, "+919912345678"),
            Money(7_800)
        );
        // A country without this category falls back to the default.
        assert_eq!(
            list.price(Category::Marketing, "+14155550100"),
            Money(10_000)
        );
        assert_eq!(list.price(Category::Utility, "+14155550100"), Money(1_000));
        assert_eq!(list.price(Category::Service, "+14155550100"), Money::ZERO);
        assert!(list.charges());
        assert!(!PriceList::empty("USD").charges());
    }

    #[test]
    fn bad_price_lists_are_refused() {
        let bad = |v| {
            serde_json::from_value::<PriceList>(v)
                .map_err(|e| e.to_string())
                .and_then(|l| l.check().map_err(|e| e.to_string()))
                .is_err()
        };
        assert!(bad(serde_json::json!({"currency": "rupees"})));
        assert!(bad(
            serde_json::json!({"currency": "INR", "default": {"marketing": -1}})
        ));
        assert!(bad(
            serde_json::json!({"currency": "INR", "countries": {"IN": {}}})
        ));
    }

    #[test]
    fn periods_are_calendar_months() {
        let (a, b) = period_bounds("2026-12").unwrap();
        assert_eq!(a.to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert_eq!(b.to_rfc3339(), "2027-01-01T00:00:00+00:00");
        assert_eq!(period_of(a), "2026-12");
        assert!(period_bounds("2026-13").is_none());
    }
}
