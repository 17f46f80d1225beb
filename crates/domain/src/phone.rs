//! Phone numbers in E.164, parsed with libphonenumber's metadata.

use crate::FieldError;
use phonenumber::{Mode, country};
use serde::Serialize;
use std::{fmt, str::FromStr};

/// An ISO 3166 alpha-2 country code that phone numbering knows (`in` → `IN`).
pub fn country_code(raw: &str) -> Result<String, FieldError> {
    let c = raw.trim().to_ascii_uppercase();
    match country::Id::from_str(&c) {
        Ok(_) if c.len() == 2 => Ok(c),
        _ => Err(FieldError::new(
            "default_country",
            "is not an ISO 3166 country code",
        )),
    }
}

/// A valid phone number in E.164 form (`+919812345678`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct PhoneE164(String);

impl PhoneE164 {
    /// Parses what a person typed. Without a leading `+`, `default_country` (ISO 3166 alpha-2,
    /// e.g. `IN`) says which country the number is in.
    pub fn parse(raw: &str, default_country: Option<&str>) -> Result<Self, FieldError> {
        let err = |m: &str| FieldError::new("phone", m);
        let t = raw.trim();
        if t.is_empty() {
            return Err(err("is required"));
        }
        let upper = default_country.map(str::to_ascii_uppercase);
        match crate::phone_fast::e164(t, upper.as_deref()) {
            Some(e164) => Ok(Self(e164)),
            None => Self::parse_fully(t, upper.as_deref()),
        }
    }

    /// The full parser, for every form of number (`t` trimmed and not empty).
    pub(crate) fn parse_fully(t: &str, default_country: Option<&str>) -> Result<Self, FieldError> {
        let err = |m: &str| FieldError::new("phone", m);
        let region = default_country
            .map(|c| country::Id::from_str(c).map_err(|_| err("has an unknown default country")))
            .transpose()?;
        // `00` international prefix → `+`.
        let t = match t.strip_prefix("00") {
            Some(rest) if region.is_none() => format!("+{rest}"),
            _ => t.to_string(),
        };
        let n = phonenumber::parse(region, &t).map_err(|_| err("is not a phone number"))?;
        if !phonenumber::is_valid(&n) {
            return Err(err("is not a valid phone number for its country"));
        }
        Ok(Self(n.format().mode(Mode::E164).to_string()))
    }

    /// From WhatsApp's `wa_id` (the number's digits, no `+`).
    pub fn from_wa_id(wa_id: &str) -> Result<Self, FieldError> {
        if wa_id.is_empty() || !wa_id.chars().all(|c| c.is_ascii_digit()) {
            return Err(FieldError::new("wa_id", "must be digits"));
        }
        Self::parse(&format!("+{wa_id}"), None)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits Meta expects in `to` and reports as `wa_id`.
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }

    /// The number without its country calling code, as people write it at home less any
    /// trunk prefix (`+919812345678` → `9812345678`).
    pub fn national_digits(&self) -> String {
        match phonenumber::parse(None, &self.0) {
            Ok(n) => n.national().value().to_string(),
            Err(_) => self.digits().to_string(),
        }
    }

    /// Trusted input (a value this type produced earlier, read back from storage).
    pub fn from_stored(s: String) -> Self {
        Self(s)
    }
}

impl fmt::Display for PhoneE164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn national_digits_drop_the_country_code() {
        let p = PhoneE164::parse("+919812345678", None).unwrap();
        assert_eq!(p.national_digits(), "9812345678");
        let p = PhoneE164::parse("+14155550100", None).unwrap();
        assert_eq!(p.national_digits(), "4155550100");
    }

    #[test]
    fn parses_with_and_without_country() {
        assert_eq!(
            PhoneE164::parse("+91 98123 45678", None).unwrap().as_str(),
            "+919812345678"
        );
        assert_eq!(
            PhoneE164::parse("098123 45678", Some("in"))
                .unwrap()
                .as_str(),
            "+919812345678"
        );
        assert_eq!(
            PhoneE164::parse("08031234567", Some("NG"))
                .unwrap()
                .as_str(),
            "+2348031234567"
        );
        assert_eq!(
            PhoneE164::parse("00919812345678", None).unwrap().as_str(),
            "+919812345678"
        );
        assert_eq!(
            PhoneE164::from_wa_id("919812345678").unwrap().digits(),
            "919812345678"
        );
    }

    #[test]
    fn refuses_invalid_numbers() {
        assert!(PhoneE164::parse("12345", Some("US")).is_err());
        assert!(PhoneE164::parse("hello", None).is_err());
        assert!(
            PhoneE164::parse("9812345678", None).is_err(),
            "no country, no +"
        );
        assert!(PhoneE164::parse("+91 98123", Some("ZZ")).is_err());
        assert!(PhoneE164::from_wa_id("+91").is_err());
    }
}
