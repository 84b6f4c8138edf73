//! Munic paging: a list is served a page at a time as `XxxPaged { count next list }`; the caller
//! asks for `page_size` items and continues with `page_id`, an opaque cursor copied from the
//! previous page's `next` (null on the last page).
//!
//! Cursors are keyset positions (the sort key of the last item served), not offsets: a page
//! continues right after the item the previous page ended with, so items inserted meanwhile
//! never shift a page (no item is served twice or skipped because of an insert). A cursor
//! names the list it belongs to, so one list's cursor is refused by another.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::error::DomainError;

/// One page of a list.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    pub list: Vec<T>,
    /// The cursor of the next page; `None` on the last page.
    pub next: Option<String>,
    /// Items over all pages, when known.
    pub count: Option<u64>,
}

/// Default and largest `page_size` of a list.
#[derive(Clone, Copy, Debug)]
pub struct PageLimits {
    pub default: u32,
    pub max: u32,
}

/// Devices: `devices`.
pub const DEVICE_PAGES: PageLimits = PageLimits {
    default: 50,
    max: 500,
};
/// Groups, vehicles and accounts: `groups`, `vehicles`, `accounts` and the lists on a group.
pub const FLEET_PAGES: PageLimits = PageLimits {
    default: 50,
    max: 500,
};
/// Tracks of a device: `device.tracks`.
pub const TRACK_PAGES: PageLimits = PageLimits {
    default: 100,
    max: 1_000,
};
/// One field's values, columnar: `device.readings`.
pub const READING_PAGES: PageLimits = PageLimits {
    default: 1_000,
    max: 10_000,
};

/// The position after which a page starts: the sort key of the previous page's last item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Position {
    /// Lists sorted by (time in unix ms, id).
    TimeId(i64, i64),
    /// Lists sorted by a text key (devices: the IMEI).
    Key(String),
    /// Lists sorted by a numeric id (groups, vehicles).
    Id(i64),
}

#[derive(Serialize, Deserialize)]
struct CursorBody {
    /// The list the cursor belongs to.
    l: String,
    p: Position,
}

/// A validated page request: how many items, and after which position.
#[derive(Clone, Debug, PartialEq)]
pub struct PageRequest {
    pub size: u32,
    pub after: Option<Position>,
}

impl PageRequest {
    /// Checks `page_size` (1..=max, default when absent) and decodes `page_id` for `list`.
    pub fn parse(
        list: &str,
        limits: PageLimits,
        page_size: Option<i64>,
        page_id: Option<&str>,
    ) -> Result<Self, DomainError> {
        let size = match page_size {
            None => limits.default,
            Some(n) if n >= 1 && n <= i64::from(limits.max) => n as u32,
            Some(n) => {
                return Err(DomainError::invalid(
                    "page_size",
                    format!(
                        "page_size must be between 1 and {} for {list} (got {n}; default {})",
                        limits.max, limits.default
                    ),
                ));
            }
        };
        let after = page_id
            .filter(|p| !p.is_empty())
            .map(|p| decode(list, p))
            .transpose()?;
        Ok(PageRequest { size, after })
    }

    /// Builds the page from up to `size + 1` items fetched after `after` (the extra one only
    /// says that a next page exists), with `key` giving an item's position.
    pub fn page<T>(
        &self,
        list: &str,
        mut items: Vec<T>,
        count: Option<u64>,
        key: impl Fn(&T) -> Position,
    ) -> Page<T> {
        let more = items.len() > self.size as usize;
        items.truncate(self.size as usize);
        let next = if more {
            items.last().map(|last| encode(list, key(last)))
        } else {
            None
        };
        Page {
            list: items,
            next,
            count,
        }
    }

    /// How many items to fetch: one more than the page holds.
    pub fn fetch(&self) -> u32 {
        self.size + 1
    }
}

fn encode(list: &str, p: Position) -> String {
    let body = CursorBody {
        l: list.to_owned(),
        p,
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&body).expect("a cursor serializes"))
}

fn decode(list: &str, page_id: &str) -> Result<Position, DomainError> {
    let bad = || {
        DomainError::invalid(
            "page_id",
            format!(
                "page_id is not a cursor of {list}: pass the `next` of a previous page of this list"
            ),
        )
    };
    if page_id.len() > 512 {
        return Err(bad());
    }
    let bytes = URL_SAFE_NO_PAD.decode(page_id).map_err(|_| bad())?;
    let body: CursorBody = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if body.l != list {
        return Err(bad());
    }
    Ok(body.p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_defaults_and_is_bounded() {
        let r = PageRequest::parse("tracks", TRACK_PAGES, None, None).unwrap();
        assert_eq!(r.size, 100);
        assert!(PageRequest::parse("tracks", TRACK_PAGES, Some(1000), None).is_ok());
        for bad in [0, -1, 1001] {
            let e = PageRequest::parse("tracks", TRACK_PAGES, Some(bad), None).unwrap_err();
            assert_eq!(e.code(), "BAD_USER_INPUT");
            assert!(e.to_string().contains("between 1 and 1000"), "{e}");
        }
    }

    #[test]
    fn a_next_cursor_round_trips_and_only_for_its_list() {
        let r = PageRequest::parse("tracks", TRACK_PAGES, Some(2), None).unwrap();
        let page = r.page(
            "tracks",
            vec![(10, 1), (10, 2), (11, 3)],
            Some(3),
            |&(t, i)| Position::TimeId(t, i),
        );
        assert_eq!(page.list.len(), 2);
        let next = page.next.unwrap();
        let r2 = PageRequest::parse("tracks", TRACK_PAGES, Some(2), Some(&next)).unwrap();
        assert_eq!(r2.after, Some(Position::TimeId(10, 2)));
        let e = PageRequest::parse("devices", DEVICE_PAGES, None, Some(&next)).unwrap_err();
        assert!(e.to_string().contains("not a cursor of devices"), "{e}");
    }

    #[test]
    fn the_last_page_has_no_next_and_garbage_cursors_are_refused() {
        let r = PageRequest::parse("devices", DEVICE_PAGES, Some(5), None).unwrap();
        let page = r.page("devices", vec!["a".to_string()], None, |s| {
            Position::Key(s.clone())
        });
        assert_eq!(page.next, None);
        for garbage in ["%%%", "bm90IGpzb24", &"A".repeat(600)] {
            assert!(PageRequest::parse("devices", DEVICE_PAGES, None, Some(garbage)).is_err());
        }
    }
}
