//! What a contact is made of: language, birthday, tags, consent — each parsed once.

use crate::FieldError;
use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};

/// A BCP-47 language tag such as `en`, `hi`, `ta`, `pt-BR`; normalised (`pt-br` → `pt-BR`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Language(String);

impl Language {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let err = || {
            FieldError::new(
                "language",
                "must be a language code such as en, hi, ta or pt-BR",
            )
        };
        let t = raw.trim().replace('_', "-");
        let mut parts = t.split('-');
        let primary = parts
            .next()
            .filter(|p| (2..=3).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphabetic()))
            .ok_or_else(err)?;
        let mut out = primary.to_ascii_lowercase();
        for p in parts {
            if p.is_empty() || p.len() > 8 || !p.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(err());
            }
            out.push('-');
            // Regions are upper-case (BR), scripts title-case (Latn), others lower-case.
            match p.len() {
                2 => out.push_str(&p.to_ascii_uppercase()),
                4 => {
                    out.push_str(&p[..1].to_ascii_uppercase());
                    out.push_str(&p[1..].to_ascii_lowercase());
                }
                _ => out.push_str(&p.to_ascii_lowercase()),
            }
        }
        Ok(Self(out))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A birthday as ISO 8601 allows it: `1990-05-15`, or `--05-15` when the year is unknown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Birthday(String);

impl Birthday {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let err = || {
            FieldError::new(
                "birthday",
                "must be YYYY-MM-DD, or --MM-DD when the year is unknown",
            )
        };
        let t = raw.trim();
        if let Some(md) = t.strip_prefix("--") {
            // Leap day allowed: the year is unknown.
            chrono::NaiveDate::parse_from_str(&format!("2000-{md}"), "%Y-%m-%d")
                .map_err(|_| err())?;
            if md.len() != 5 {
                return Err(err());
            }
            return Ok(Self(t.to_string()));
        }
        let d = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d").map_err(|_| err())?;
        if t.len() != 10 || d.year_ce().1 < 1900 {
            return Err(err());
        }
        Ok(Self(t.to_string()))
    }

    /// `MM-DD`, for "birthday today" whatever the year.
    pub fn month_day(&self) -> &str {
        &self.0[self.0.len() - 5..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

use chrono::Datelike;

/// A tag: trimmed, lower-case, 1–50 characters, no commas.
pub fn tag(raw: &str) -> Result<String, FieldError> {
    let t = raw.trim().to_lowercase();
    if t.is_empty() || t.chars().count() > 50 || t.contains(',') || t.chars().any(char::is_control)
    {
        return Err(FieldError::new(
            "tags",
            format!("{raw:?} is not a tag (1–50 characters, no commas)"),
        ));
    }
    Ok(t)
}

/// Marketing consent. No value means nobody has asked yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Consent {
    OptedIn,
    OptedOut,
}

impl Consent {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OptedIn => "opted_in",
            Self::OptedOut => "opted_out",
        }
    }
}

impl fmt::Display for Consent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Consent {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "opted_in" => Ok(Self::OptedIn),
            "opted_out" => Ok(Self::OptedOut),
            other => Err(format!("unknown consent {other:?}")),
        }
    }
}

/// The order of a contact list. Pages follow it with the usual cursor (the last contact's id).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ContactSort {
    /// `-created_at`: newest first.
    #[default]
    Newest,
    /// `created_at`: oldest first.
    Oldest,
    /// `name`: A to Z, case-insensitive; contacts without a name first.
    NameAsc,
    /// `-name`: Z to A.
    NameDesc,
}

impl ContactSort {
    pub fn parse(raw: Option<&str>) -> Result<Self, FieldError> {
        Ok(match raw.map(str::trim) {
            None | Some("") | Some("-created_at") => Self::Newest,
            Some("created_at") => Self::Oldest,
            Some("name") => Self::NameAsc,
            Some("-name") => Self::NameDesc,
            Some(_) => {
                return Err(FieldError::new(
                    "sort",
                    "must be created_at, -created_at, name or -name",
                ));
            }
        })
    }
}

/// Inbound words that change consent, by language. Matched on the whole message, ignoring
/// case, surrounding spaces and a trailing full stop or exclamation mark.
pub const OPT_OUT_WORDS: &[&str] = &[
    "stop",
    "unsubscribe",
    "stop promotions",
    "stopall",
    "cancel",
    "opt out",
    "optout",
    "रोकें",
    "बंद करें",
    "बंद",
    "நிறுத்து",
    "ఆపు",
    "ನಿಲ್ಲಿಸಿ",
    "ਰੋਕੋ",
    "থামুন",
    "थांबवा",
];
pub const OPT_IN_WORDS: &[&str] = &[
    "start",
    "subscribe",
    "unstop",
    "opt in",
    "optin",
    "शुरू",
    "शुरू करें",
    "தொடங்கு",
    "ప్రారంభించు",
    "ಪ್ರಾರಂಭಿಸಿ",
    "ਸ਼ੁਰੂ",
];

/// A text as keywords are compared: trimmed, lower-case, without trailing punctuation.
pub fn normalize_keyword(text: &str) -> String {
    text.trim()
        .trim_end_matches(['.', '!', '।'])
        .trim()
        .to_lowercase()
}

/// The language of a built-in keyword that is not English (BCP-47), for confirming in it.
pub fn builtin_keyword_language(normalized: &str) -> Option<&'static str> {
    Some(match normalized {
        "रोकें" | "बंद करें" | "बंद" | "शुरू" | "शुरू करें" => {
            "hi"
        }
        "நிறுத்து" | "தொடங்கு" => "ta",
        "ఆపు" | "ప్రారంభించు" => "te",
        "ನಿಲ್ಲಿಸಿ" | "ಪ್ರಾರಂಭಿಸಿ" => "kn",
        "ਰੋਕੋ" | "ਸ਼ੁਰੂ" => "pa",
        "থামুন" => "bn",
        "थांबवा" => "mr",
        _ => return None,
    })
}

/// The built-in confirmation of a consent change, in `language` when there is one for it.
pub fn builtin_confirmation(language: &str, consent: Consent) -> Option<&'static str> {
    Some(match (language, consent) {
        ("en", Consent::OptedOut) => {
            "You will no longer receive promotional messages from us. Reply START to subscribe again."
        }
        ("en", Consent::OptedIn) => {
            "You are subscribed to our updates again. Reply STOP to unsubscribe."
        }
        ("hi", Consent::OptedOut) => {
            "अब आपको हमारी ओर से प्रचार संदेश नहीं मिलेंगे। दोबारा जुड़ने के लिए START भेजें।"
        }
        ("hi", Consent::OptedIn) => "आप फिर से हमारे अपडेट पाने के लिए जुड़ गए हैं। बंद करने के लिए STOP भेजें।",
        ("ta", Consent::OptedOut) => {
            "இனி எங்களிடமிருந்து விளம்பரச் செய்திகள் வராது. மீண்டும் பெற START என அனுப்பவும்."
        }
        ("ta", Consent::OptedIn) => "எங்கள் செய்திகளை மீண்டும் பெறுவீர்கள். நிறுத்த STOP என அனுப்பவும்.",
        _ => return None,
    })
}

/// The built-in keywords: (opt-out, opt-in).
pub fn builtin_keywords() -> (&'static [&'static str], &'static [&'static str]) {
    (OPT_OUT_WORDS, OPT_IN_WORDS)
}

/// What an inbound text asks for, if it is a built-in consent keyword.
pub fn keyword(text: &str) -> Option<Consent> {
    let t = normalize_keyword(text);
    if OPT_OUT_WORDS.contains(&t.as_str()) {
        Some(Consent::OptedOut)
    } else if OPT_IN_WORDS.contains(&t.as_str()) {
        Some(Consent::OptedIn)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages() {
        assert_eq!(Language::parse("EN").unwrap().as_str(), "en");
        assert_eq!(Language::parse("pt_br").unwrap().as_str(), "pt-BR");
        assert_eq!(Language::parse("zh-hant").unwrap().as_str(), "zh-Hant");
        for bad in ["", "e", "english", "en-", "12"] {
            assert!(Language::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn birthdays_with_and_without_year() {
        assert_eq!(Birthday::parse("1990-05-15").unwrap().month_day(), "05-15");
        assert_eq!(Birthday::parse("--02-29").unwrap().month_day(), "02-29");
        for bad in [
            "1990-13-01",
            "1990-02-30",
            "--13-01",
            "15/05/1990",
            "1800-01-01",
            "--5-15",
        ] {
            assert!(Birthday::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keywords_and_tags() {
        assert_eq!(keyword(" Stop! "), Some(Consent::OptedOut));
        assert_eq!(keyword("रोकें"), Some(Consent::OptedOut));
        assert_eq!(keyword("START"), Some(Consent::OptedIn));
        assert_eq!(keyword("please stop calling"), None);
        assert_eq!(tag("  VIP ").unwrap(), "vip");
        assert!(tag("a,b").is_err());
        assert!(tag("").is_err());
    }
}
