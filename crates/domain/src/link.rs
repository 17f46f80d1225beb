//! Smart links: short codes, destinations, UTM parameters, and what a click's user agent says
//! (device, browser, OS — and whether it was a person at all). Pure rules; the store records
//! clicks, the API redirects.

use crate::{FieldError, MessageId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Length of a link's own code: 62⁸ ≈ 2.2 × 10¹⁴ codes, drawn at random.
pub const CODE_LEN: usize = 8;
/// Length of a recipient's personal code. Different from [`CODE_LEN`], so the two kinds never
/// collide and a lookup knows which table to ask.
pub const PERSONAL_CODE_LEN: usize = 12;
/// Longest destination URL accepted.
pub const MAX_URL_LEN: usize = 2048;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn base62(bytes: &[u8], len: usize) -> String {
    // Each character takes one byte mod 62: 256 = 4×62 + 8, so the first eight letters are
    // slightly likelier; ~5.95 bits per character instead of 5.954 — negligible here.
    bytes
        .iter()
        .take(len)
        .map(|b| ALPHABET[(*b as usize) % 62] as char)
        .collect()
}

/// A new random code for a link (from the operating system's random source, via UUIDv4).
pub fn new_code() -> String {
    base62(uuid::Uuid::new_v4().as_bytes(), CODE_LEN)
}

/// A random secret per link; personal codes are derived from it.
pub fn new_salt() -> Vec<u8> {
    uuid::Uuid::new_v4().as_bytes().to_vec()
}

/// The personal code of one recipient's message: derived from the link's secret salt and the
/// message id, so the same message rendered again (a retry after a crash) carries the same
/// code, and nobody without the salt can guess another recipient's code.
pub fn personal_code(salt: &[u8], message: MessageId) -> String {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(message.0.as_bytes());
    base62(&h.finalize(), PERSONAL_CODE_LEN)
}

/// Whether `code` could be a code at all (cheap check before any lookup).
pub fn plausible_code(code: &str) -> bool {
    (code.len() == CODE_LEN || code.len() == PERSONAL_CODE_LEN)
        && code.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Checks a destination: an absolute http(s) URL with a host, at most [`MAX_URL_LEN`] long.
pub fn destination(raw: &str) -> Result<String, FieldError> {
    let raw = raw.trim();
    if raw.len() > MAX_URL_LEN {
        return Err(FieldError::new(
            "url",
            format!("must be at most {MAX_URL_LEN} characters"),
        ));
    }
    let u = url::Url::parse(raw).map_err(|_| {
        FieldError::new(
            "url",
            "is not an absolute URL such as https://example.com/offer",
        )
    })?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(FieldError::new("url", "must be an http or https URL"));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(FieldError::new("url", "must name a host"));
    }
    Ok(u.to_string())
}

/// UTM parameters appended to the destination on redirect.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Utm {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

impl Utm {
    /// Trims values, drops empty ones, refuses overly long ones.
    pub fn check(self) -> Result<Self, FieldError> {
        let f = |v: Option<String>| -> Result<Option<String>, FieldError> {
            match v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()) {
                Some(s) if s.chars().count() > 200 => Err(FieldError::new(
                    "utm",
                    "values must be at most 200 characters",
                )),
                other => Ok(other),
            }
        };
        Ok(Utm {
            source: f(self.source)?,
            medium: f(self.medium)?,
            campaign: f(self.campaign)?,
            term: f(self.term)?,
            content: f(self.content)?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.pairs().next().is_none()
    }

    fn pairs(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("utm_source", &self.source),
            ("utm_medium", &self.medium),
            ("utm_campaign", &self.campaign),
            ("utm_term", &self.term),
            ("utm_content", &self.content),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
    }

    /// The destination with these parameters appended (replacing any of the same name the
    /// destination already carries); the URL's fragment stays last.
    pub fn apply(&self, destination: &str) -> String {
        if self.is_empty() {
            return destination.to_string();
        }
        let Ok(mut u) = url::Url::parse(destination) else {
            return destination.to_string();
        };
        let ours: Vec<(&str, &str)> = self.pairs().collect();
        let kept: Vec<(String, String)> = u
            .query_pairs()
            .filter(|(k, _)| !ours.iter().any(|(o, _)| o == k))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        {
            let mut q = u.query_pairs_mut();
            q.clear();
            for (k, v) in &kept {
                q.append_pair(k, v);
            }
            for (k, v) in ours {
                q.append_pair(k, v);
            }
        }
        u.to_string()
    }
}

/// What a click's user agent tells: the kind of device, browser and OS, and whether it was a
/// link-preview fetcher or another bot (recorded, never counted as a click).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// `mobile`, `tablet`, `desktop`, `bot` or `other`.
    pub device: &'static str,
    pub browser: String,
    pub os: String,
    pub bot: bool,
}

/// Link-preview fetchers and tools that fetch a link without a person behind them. Matched
/// case-insensitively anywhere in the user agent. WhatsApp's own preview fetcher
/// (`WhatsApp/2.23.20.0 A`) is the one every WhatsApp link meets first.
const BOTS: &[&str] = &[
    "whatsapp/",
    "facebookexternalhit",
    "facebot",
    "meta-externalagent",
    "twitterbot",
    "slackbot",
    "telegrambot",
    "discordbot",
    "linkedinbot",
    "skypeuripreview",
    "googlebot",
    "google-inspectiontool",
    "adsbot-google",
    "bingbot",
    "bingpreview",
    "yandexbot",
    "baiduspider",
    "duckduckbot",
    "applebot",
    "pinterest",
    "redditbot",
    "embedly",
    "vkshare",
    "viber",
    "snapchat",
    "iframely",
    "headlesschrome",
    "phantomjs",
    // Command-line and library clients: a person clicking a link in a chat uses a browser.
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "aiohttp",
    "go-http-client",
    "okhttp",
    "java/",
    "libwww-perl",
    "httpclient",
    "node-fetch",
    "axios/",
    // Generic words crawlers put in their names.
    "bot",
    "spider",
    "crawler",
    "preview",
];

pub fn is_bot(ua: &str) -> bool {
    let ua = ua.trim();
    if ua.is_empty() {
        return true;
    }
    let lower = ua.to_ascii_lowercase();
    BOTS.iter().any(|b| lower.contains(b))
}

/// Parses a user agent: the bot rules above first, then woothee for browser, OS and device.
pub fn classify(ua: &str) -> Agent {
    let parsed = woothee::parser::Parser::new().parse(ua);
    let bot = is_bot(ua) || parsed.as_ref().is_some_and(|p| p.category == "crawler");
    let unknown = |s: &str| {
        if s.is_empty() || s == "UNKNOWN" {
            "Other".to_string()
        } else {
            s.to_string()
        }
    };
    let (browser, os, category) = match &parsed {
        Some(p) => (unknown(p.name), unknown(p.os), p.category),
        None => ("Other".into(), "Other".into(), ""),
    };
    let lower = ua.to_ascii_lowercase();
    let device = if bot {
        "bot"
    } else if lower.contains("ipad") || lower.contains("tablet") {
        "tablet"
    } else {
        match category {
            "smartphone" | "mobilephone" => "mobile",
            "pc" => "desktop",
            _ if lower.contains("android") => "mobile",
            _ => "other",
        }
    };
    Agent {
        device,
        browser,
        os,
        bot,
    }
}

/// The key a click is made unique by when no contact is known: its IP and user agent, hashed
/// (neither is kept in the key).
pub fn visitor_key(ip: Option<&str>, ua: &str) -> String {
    let mut h = Sha256::new();
    h.update(ip.unwrap_or("").as_bytes());
    h.update([0u8]);
    h.update(ua.as_bytes());
    hex_lower(&h.finalize()[..16])
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_their_lengths_and_personal_ones_are_stable() {
        let c = new_code();
        assert_eq!(c.len(), CODE_LEN);
        assert!(plausible_code(&c));
        assert_ne!(new_code(), new_code());
        let salt = new_salt();
        let m = MessageId::new();
        let p = personal_code(&salt, m);
        assert_eq!(p.len(), PERSONAL_CODE_LEN);
        assert_eq!(p, personal_code(&salt, m));
        assert_ne!(p, personal_code(&new_salt(), m));
        assert_ne!(p, personal_code(&salt, MessageId::new()));
        assert!(!plausible_code("abc"));
        assert!(!plausible_code("abc/def1"));
    }

    #[test]
    fn only_http_destinations() {
        assert!(destination("https://shop.example/sale?x=1").is_ok());
        assert!(destination("http://shop.example").is_ok());
        assert!(destination("javascript:alert(1)").is_err());
        assert!(destination("ftp://shop.example/file").is_err());
        assert!(destination("/relative").is_err());
        assert!(destination(&format!("https://a.example/{}", "x".repeat(3000))).is_err());
    }

    #[test]
    fn utm_is_appended_and_replaces_its_own_names() {
        let utm = Utm {
            source: Some("whatsapp".into()),
            campaign: Some("diwali sale".into()),
            ..Default::default()
        };
        assert_eq!(
            utm.apply("https://shop.example/p?id=7&utm_source=old#top"),
            "https://shop.example/p?id=7&utm_source=whatsapp&utm_campaign=diwali+sale#top"
        );
        assert_eq!(
            Utm::default().apply("https://shop.example/p"),
            "https://shop.example/p"
        );
    }

    #[test]
    fn preview_fetchers_and_bots_are_recognised() {
        for ua in [
            "WhatsApp/2.23.20.0 A",
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            "Twitterbot/1.0",
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
            "TelegramBot (like TwitterBot)",
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            "curl/8.5.0",
            "",
        ] {
            let a = classify(ua);
            assert!(a.bot, "{ua:?}");
            assert_eq!(a.device, "bot");
        }
        let phone = classify(
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
        );
        assert!(!phone.bot);
        assert_eq!(phone.device, "mobile");
        assert_eq!(phone.browser, "Chrome");
        assert_eq!(phone.os, "Android");
        let mac = classify(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
        );
        assert_eq!(mac.device, "desktop");
        assert_eq!(mac.browser, "Safari");
        let ipad = classify(
            "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
        );
        assert_eq!(ipad.device, "tablet");
    }

    #[test]
    fn visitor_keys_differ_by_ip_and_agent() {
        let a = visitor_key(Some("10.0.0.1"), "UA");
        assert_eq!(a, visitor_key(Some("10.0.0.1"), "UA"));
        assert_ne!(a, visitor_key(Some("10.0.0.2"), "UA"));
        assert_ne!(a, visitor_key(Some("10.0.0.1"), "UA2"));
    }
}
