//! Cursor pagination for the dashboard's lists: a page of items and an opaque cursor to the
//! next one. A cursor is the position of the last item read (its table key and its index sort
//! key), base64url-encoded; it never carries the partition it was read from, which is always
//! the caller's own, so a cursor cannot reach another workspace's items.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::DashboardError;

/// The default and the largest page.
pub const DEFAULT_PAGE_SIZE: u32 = 25;
pub const MAX_PAGE_SIZE: u32 = 100;

/// One page of a list, and the cursor to the next (absent on the last page).
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<PageKey>,
}

/// A position in a list read from an index: the last item's table key and index sort key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageKey {
    pub pk: String,
    pub sk: String,
    pub index_sk: String,
}

const MAX_CURSOR_CHARS: usize = 2048;

impl PageKey {
    /// The opaque cursor a client passes back.
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(&(&self.pk, &self.sk, &self.index_sk)).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(json)
    }

    /// Reads a cursor back; anything that is not one this API issued is a 400 on `cursor`.
    pub fn decode(cursor: &str) -> Result<Self, DashboardError> {
        let invalid = || DashboardError::invalid("cursor", "is not a cursor this API issued");
        if cursor.len() > MAX_CURSOR_CHARS {
            return Err(invalid());
        }
        let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
        let (pk, sk, index_sk): (String, String, String) =
            serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        // DynamoDB keys: a sort key is at most 1024 bytes.
        if [&pk, &sk, &index_sk]
            .iter()
            .any(|k| k.is_empty() || k.len() > 1024)
        {
            return Err(invalid());
        }
        Ok(Self { pk, sk, index_sk })
    }

    /// Checks the position belongs to the list being read: its keys start with the prefixes
    /// that list's items have. A forged cursor is refused rather than read from.
    pub fn expect(self, pk: &str, sk: &str, index_sk: &str) -> Result<Self, DashboardError> {
        if self.pk.starts_with(pk) && self.sk.starts_with(sk) && self.index_sk.starts_with(index_sk)
        {
            Ok(self)
        } else {
            Err(DashboardError::invalid(
                "cursor",
                "is not a cursor of this list",
            ))
        }
    }
}

/// A `limit` parameter: a whole number from 1 to [`MAX_PAGE_SIZE`], [`DEFAULT_PAGE_SIZE`] when
/// absent.
pub fn limit(raw: Option<&str>) -> Result<u32, DashboardError> {
    let limit = raw
        .map(|l| {
            l.parse::<u32>()
                .map_err(|_| DashboardError::invalid("limit", "must be a whole number"))
        })
        .transpose()?;
    match limit {
        None => Ok(DEFAULT_PAGE_SIZE),
        Some(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
        Some(_) => Err(DashboardError::invalid(
            "limit",
            format!("must be between 1 and {MAX_PAGE_SIZE}"),
        )),
    }
}

/// An optional cursor parameter, decoded.
pub fn cursor(raw: Option<&str>) -> Result<Option<PageKey>, DashboardError> {
    raw.map(PageKey::decode).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(result: Result<PageKey, DashboardError>) -> String {
        match result {
            Err(DashboardError::Validation { field, .. }) => field,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn a_cursor_reads_back_as_the_position_it_was_made_from() {
        let key = PageKey {
            pk: "CT#ws#15551234567".into(),
            sk: "CONV#01J".into(),
            index_sk: "CONV#000001700000000000#01J".into(),
        };
        assert_eq!(PageKey::decode(&key.encode()).unwrap(), key);
    }

    #[test]
    fn a_garbled_or_forged_cursor_is_refused_naming_the_cursor() {
        for garbled in ["", "not base64!", "bm90IGpzb24", &"A".repeat(3000)] {
            assert_eq!(field(PageKey::decode(garbled)), "cursor", "{garbled}");
        }
        let empty = URL_SAFE_NO_PAD.encode(br#"["","",""]"#);
        assert_eq!(field(PageKey::decode(&empty)), "cursor");
        let other_list = PageKey {
            pk: "CT#other-ws#1555".into(),
            sk: "CONV#01J".into(),
            index_sk: "CONV#1".into(),
        };
        assert_eq!(
            field(other_list.expect("CT#ws#", "CONV#", "CONV#")),
            "cursor"
        );
    }

    #[test]
    fn a_page_size_out_of_range_is_refused_naming_the_limit() {
        assert_eq!(limit(None).unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(limit(Some("100")).unwrap(), 100);
        for n in ["0", "101", "-1", "ten", ""] {
            assert!(matches!(
                limit(Some(n)),
                Err(DashboardError::Validation { field, .. }) if field == "limit"
            ));
        }
    }
}
