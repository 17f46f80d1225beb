//! A quick road for numbers already written in E.164 (`+` and digits), the usual form in
//! imports. The `phonenumber` crate looks every metadata pattern up in one process-wide LRU
//! cache behind a mutex, hashing the whole pattern text with SipHash on each use: a quarter of
//! a million-row import's parsing time. Here each country code's patterns are compiled once.
//!
//! The road only answers when it is sure to agree with the full parser: a country code served
//! by one region, no national prefix to strip, and a number its metadata calls valid. Anything
//! else (`None`) takes the full parser; a test holds the two together over every region.

use phonenumber::metadata::{DATABASE, Descriptor, Metadata};
use regex::{Regex, RegexBuilder};
use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, Mutex},
};

struct Pattern {
    re: Regex,
    lengths: Vec<u16>,
}

/// A metadata pattern that matches only at the start of the text. The crate searches the
/// whole text and then asks whether the match starts at 0; the answer is the same (the
/// leftmost match starts at 0 when any does), without trying every other start position.
fn at_start(pattern: &str) -> Option<Regex> {
    // Patterns are written in extended mode: the newline ends a trailing comment, if any.
    RegexBuilder::new(&format!("^(?:{pattern}\n)"))
        .ignore_whitespace(true)
        .build()
        .ok()
}

impl Pattern {
    fn new(d: &Descriptor) -> Option<Self> {
        Some(Self {
            re: at_start(d.national_number().as_str())?,
            lengths: d.possible_length().to_vec(),
        })
    }

    /// As `Descriptor::is_match`: a possible length, and the pattern found at the start.
    fn is_match(&self, national: &str) -> bool {
        (self.lengths.is_empty() || self.lengths.contains(&(national.len() as u16)))
            && self.re.is_match(national)
    }
}

/// What the road needs of one country code's single region.
struct Country {
    region: String,
    general: Pattern,
    /// Every kind of number the region has (fixed line, mobile, toll free…).
    kinds: Vec<Pattern>,
    prefix_for_parsing: Option<Regex>,
    national_prefix: Option<String>,
}

impl Country {
    fn of(code: u16) -> Option<Self> {
        let regions = DATABASE.region(&code)?;
        let [region] = regions.as_slice() else {
            return None; // shared codes (+1, +7, +44…) choose their region by pattern
        };
        if *region == "001" {
            return None; // non-geographic codes
        }
        let meta: &Metadata = DATABASE.by_id(*region)?;
        let d = meta.descriptors();
        let kinds = [
            d.premium_rate(),
            d.toll_free(),
            d.shared_cost(),
            d.voip(),
            d.personal_number(),
            d.pager(),
            d.uan(),
            d.voicemail(),
            d.fixed_line(),
            d.mobile(),
        ]
        .into_iter()
        .flatten()
        .map(Pattern::new)
        .collect::<Option<Vec<_>>>()?;
        Some(Self {
            region: region.to_string(),
            general: Pattern::new(d.general())?,
            kinds,
            prefix_for_parsing: match meta.national_prefix_for_parsing() {
                Some(p) => Some(at_start(p.as_str())?),
                None => None,
            },
            national_prefix: meta.national_prefix().map(str::to_string),
        })
    }

    /// The full parser would strip (or try to strip) a national prefix from this number.
    fn strips_prefix(&self, national: &str) -> bool {
        let by_pattern = self
            .prefix_for_parsing
            .as_ref()
            .is_some_and(|re| re.is_match(national));
        let by_prefix = self
            .national_prefix
            .as_deref()
            .is_some_and(|p| national.starts_with(p));
        by_pattern || by_prefix
    }

    fn is_valid(&self, national: &str) -> bool {
        self.general.is_match(national) && self.kinds.iter().any(|k| k.is_match(national))
    }
}

static COUNTRIES: LazyLock<Mutex<HashMap<u16, Option<Arc<Country>>>>> =
    LazyLock::new(Default::default);

fn country(code: u16) -> Option<Arc<Country>> {
    let mut map = COUNTRIES.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(code)
        .or_insert_with(|| Country::of(code).map(Arc::new))
        .clone()
}

/// `+` and digits, valid for its country, in E.164 as the full parser would write it; `None`
/// when the full parser must decide. `default_region` is the caller's default country (ISO
/// alpha-2, upper case), which the full parser lets pick the metadata.
pub(crate) fn e164(t: &str, default_region: Option<&str>) -> Option<String> {
    let digits = t.strip_prefix('+')?;
    if !(8..=15).contains(&digits.len())
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || digits.starts_with('0')
    {
        return None;
    }
    // The first 1 to 3 digits that are a known country code, as the full parser finds it.
    let (code, national) = (1..=3).find_map(|len| {
        let code: u16 = digits[..len].parse().ok()?;
        DATABASE
            .by_code(&code)
            .is_some()
            .then(|| (code, &digits[len..]))
    })?;
    if national.starts_with('0') {
        return None;
    }
    let c = country(code)?;
    if default_region.is_some_and(|r| r != c.region) || c.strips_prefix(national) {
        return None;
    }
    c.is_valid(national).then(|| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::e164;
    use crate::phone::PhoneE164;

    /// The full parser's answer, as the quick road must give it whenever it answers.
    fn agree(t: &str, region: Option<&str>) -> bool {
        let Some(fast) = e164(t, region) else {
            return false;
        };
        let full = PhoneE164::parse_fully(t, region).map(|p| p.as_str().to_string());
        assert_eq!(Ok(&fast), full.as_ref(), "{t} in {region:?}");
        true
    }

    #[test]
    fn agrees_with_the_full_parser_for_every_region() {
        let mut answered = 0;
        for meta in phonenumber::metadata::DATABASE.iter() {
            let d = meta.descriptors();
            let examples = [
                Some(d.general()),
                d.fixed_line(),
                d.mobile(),
                d.toll_free(),
                d.premium_rate(),
                d.voip(),
                d.uan(),
                d.pager(),
            ]
            .into_iter()
            .flatten()
            .filter_map(|x| x.example());
            for ex in examples {
                let code = meta.country_code();
                // The example, one digit more or less, its digits changed, a national prefix.
                let mut variants = vec![
                    format!("+{code}{ex}"),
                    format!("+{code}{ex}5"),
                    format!("+{code}{}", &ex[..ex.len() - 1]),
                    format!("+{code}{}", ex.replace('1', "7")),
                    format!("+{code}{}", ex.chars().rev().collect::<String>()),
                ];
                if let Some(p) = meta.national_prefix() {
                    variants.push(format!("+{code}{p}{ex}"));
                }
                for v in variants {
                    for region in [None, Some(meta.id()), Some("IN"), Some("US")] {
                        answered += usize::from(agree(&v, region));
                    }
                }
            }
        }
        // The road is taken, for most regions' examples.
        assert!(answered > 1000, "answered {answered}");
    }

    #[test]
    fn agrees_over_many_numbers_of_busy_codes() {
        // A fixed sequence of pseudo-random digits (no dependency, the same every run).
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut answered = 0;
        for code in [
            91, 44, 1, 49, 33, 971, 55, 62, 234, 27, 61, 86, 81, 92, 880, 20, 39, 34, 7, 65,
        ] {
            for _ in 0..2000 {
                let len = 6 + (next() % 9) as usize;
                let digits: String = (0..len)
                    .map(|_| char::from(b'0' + (next() % 10) as u8))
                    .collect();
                let t = format!("+{code}{digits}");
                answered += usize::from(agree(&t, None));
                answered += usize::from(agree(&t, Some("IN")));
            }
        }
        assert!(answered > 1000, "answered {answered}");
    }

    #[test]
    fn takes_the_road_for_plain_e164_and_leaves_the_rest() {
        assert_eq!(
            e164("+919812345678", None).as_deref(),
            Some("+919812345678")
        );
        assert_eq!(
            e164("+919812345678", Some("IN")).as_deref(),
            Some("+919812345678")
        );
        // Another default country, a shared code, spaces, a national prefix: the full parser.
        assert_eq!(e164("+919812345678", Some("GB")), None);
        assert_eq!(e164("+16502530000", None), None);
        assert_eq!(e164("+91 98123 45678", None), None);
        assert_eq!(e164("+9109812345678", None), None);
        // Not valid for India: the full parser says why.
        assert_eq!(e164("+911234", None), None);
        assert!(PhoneE164::parse("+9112345678901", None).is_err());
    }
}
