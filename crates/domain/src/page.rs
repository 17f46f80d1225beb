//! Cursor pagination. A cursor is opaque to clients: base64 of the last row's sort key.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use uuid::Uuid;

use crate::FieldError;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;

/// Where a page starts: after the row with this id (ids are time-ordered UUIDv7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor(pub Uuid);

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0.as_bytes())
    }

    pub fn decode(s: &str) -> Result<Self, FieldError> {
        let bad = || FieldError::new("cursor", "is not a cursor this API returned");
        let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?;
        let arr: [u8; 16] = bytes.try_into().map_err(|_| bad())?;
        Ok(Self(Uuid::from_bytes(arr)))
    }
}

/// A parsed `?limit=&cursor=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    pub after: Option<Cursor>,
}

impl PageRequest {
    pub fn parse(limit: Option<i64>, cursor: Option<&str>) -> Result<Self, FieldError> {
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(n) if n >= 1 && n <= MAX_LIMIT as i64 => n as u32,
            Some(_) => {
                return Err(FieldError::new(
                    "limit",
                    format!("must be between 1 and {MAX_LIMIT}"),
                ));
            }
        };
        let after = match cursor {
            None | Some("") => None,
            Some(c) => Some(Cursor::decode(c)?),
        };
        Ok(Self { limit, after })
    }

    /// Ask the database for one more row than the page holds, to know whether another page exists.
    pub fn fetch_limit(&self) -> i64 {
        self.limit as i64 + 1
    }
}

/// Cuts the extra row fetched by [`PageRequest::fetch_limit`] and returns the next cursor.
pub fn finish_page<T>(
    mut rows: Vec<T>,
    page: &PageRequest,
    key: impl Fn(&T) -> Uuid,
) -> (Vec<T>, Option<String>) {
    if rows.len() > page.limit as usize {
        rows.truncate(page.limit as usize);
        let next = rows.last().map(|r| Cursor(key(r)).encode());
        (rows, next)
    } else {
        (rows, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let c = Cursor(Uuid::now_v7());
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        assert!(Cursor::decode("not-a-cursor!").is_err());
        assert!(Cursor::decode("AAAA").is_err());
    }

    #[test]
    fn limit_defaults_and_bounds() {
        assert_eq!(PageRequest::parse(None, None).unwrap().limit, 50);
        assert_eq!(PageRequest::parse(Some(500), None).unwrap().limit, 500);
        assert!(PageRequest::parse(Some(0), None).is_err());
        assert!(PageRequest::parse(Some(501), None).is_err());
    }

    #[test]
    fn finish_page_sets_cursor_only_when_more_rows_exist() {
        let page = PageRequest::parse(Some(2), None).unwrap();
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let (rows, next) = finish_page(ids.clone(), &page, |u| *u);
        assert_eq!(rows.len(), 2);
        assert_eq!(next, Some(Cursor(ids[1]).encode()));
        let (rows, next) = finish_page(ids[..2].to_vec(), &page, |u| *u);
        assert_eq!(rows.len(), 2);
        assert_eq!(next, None);
    }
}
