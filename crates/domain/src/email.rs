use crate::FieldError;
use serde::Serialize;
use std::fmt;

/// An e-mail address, trimmed and lower-cased so that one mailbox is one identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let s = raw.trim().to_lowercase();
        let err = |m: &str| FieldError::new("email", m);
        if s.is_empty() {
            return Err(err("is required"));
        }
        if s.len() > 254 {
            return Err(err("is longer than 254 characters"));
        }
        let Some((local, domain)) = s.rsplit_once('@') else {
            return Err(err("is not an e-mail address"));
        };
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '.' || c == '-');
        if local.is_empty()
            || local.len() > 64
            || !domain_ok
            || s.chars().any(|c| c.is_whitespace() || c.is_control())
            || local.contains('@')
        {
            return Err(err("is not an e-mail address"));
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_and_space() {
        assert_eq!(
            Email::parse("  Asha@Example.COM ").unwrap().as_str(),
            "asha@example.com"
        );
    }

    #[test]
    fn refuses_what_is_not_an_address() {
        for bad in [
            "",
            "asha",
            "asha@",
            "@example.com",
            "a b@example.com",
            "asha@example",
            "asha@.com",
            "a@b@c.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
