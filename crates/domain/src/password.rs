//! The password policy: long enough, and not one a guesser tries first.

use crate::FieldError;

pub const MIN_LEN: usize = 10;
pub const MAX_LEN: usize = 256;

/// Common passwords of policy length, from public breach top lists (lower-case).
static COMMON: &str = include_str!("common-passwords.txt");

/// A password that passed the policy; only ever hashed, never stored or shown.
pub struct NewPassword(String);

impl NewPassword {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let err = |m: String| FieldError::new("password", m);
        let chars = raw.chars().count();
        if chars < MIN_LEN {
            return Err(err(format!("must be at least {MIN_LEN} characters")));
        }
        if chars > MAX_LEN {
            return Err(err(format!("must be at most {MAX_LEN} characters")));
        }
        let lower = raw.to_lowercase();
        if COMMON.lines().any(|c| c == lower) {
            return Err(err("is one of the most common passwords".into()));
        }
        let mut distinct: Vec<char> = raw.chars().collect();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() < 4 {
            return Err(err("uses too few different characters".into()));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewPassword(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_common_and_monotonous_passwords_are_refused() {
        assert!(NewPassword::parse("short").is_err());
        assert!(NewPassword::parse("Password123").is_err());
        assert!(NewPassword::parse("1234567890").is_err());
        assert!(NewPassword::parse("abababababab").is_err());
    }

    #[test]
    fn a_decent_password_passes_and_does_not_print() {
        let p = NewPassword::parse("correct horse battery").unwrap();
        assert_eq!(p.expose(), "correct horse battery");
        assert!(!format!("{p:?}").contains("horse"));
    }

    #[test]
    fn the_list_is_lower_case_and_of_policy_length() {
        for l in COMMON.lines() {
            assert_eq!(l, l.to_lowercase());
            assert!(
                l.chars().count() >= MIN_LEN,
                "{l} is shorter than the policy"
            );
        }
    }
}
