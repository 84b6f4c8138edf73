//! Reading a device's data back: the caller's devices, a device's tracks over a time window,
//! the last known value of each field, the last position, and one field as a series. Every
//! method checks that the caller may see the device first; unknown and foreign devices get
//! the same `NotFound`.

use super::{Ekko, require};
use crate::Caller;
use crate::device::Device;
use crate::error::DomainError;
use crate::history::{LastValue, Reading, TrackWindow};
use crate::paging::{Page, PageRequest, Position, READING_PAGES, TRACK_PAGES};
use crate::time::Timestamp;
use crate::track::Track;

/// Most field names one request may filter on.
pub const MAX_FIELD_FILTER: usize = 256;

/// A time window given as RFC 3339 strings: `since` inclusive, `until` exclusive.
#[derive(Clone, Debug, Default)]
pub struct TimeWindow<'a> {
    pub since: Option<&'a str>,
    pub until: Option<&'a str>,
}

/// `page_size` and `page_id` as the caller sent them.
#[derive(Clone, Copy, Debug, Default)]
pub struct PageArgs<'a> {
    pub page_size: Option<i64>,
    pub page_id: Option<&'a str>,
}

/// Parses an RFC 3339 bound, rounded *up* to Ekko's millisecond precision: with records at
/// whole milliseconds, `t >= since` and `t < until` give the same answer for the rounded bound
/// as for the exact one (a plain cut would admit a record just before `since`).
fn parse_time(field: &str, s: &str) -> Result<Timestamp, DomainError> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .and_then(|t| {
            let t = t.with_timezone(&chrono::Utc);
            let ms = t.timestamp_millis();
            let exact = t.timestamp_subsec_nanos() % 1_000_000 == 0;
            crate::time::from_unix_ms(if exact { ms } else { ms.checked_add(1)? })
        })
        .ok_or_else(|| {
            DomainError::invalid(
                field,
                format!(
                    "{field} must be an RFC 3339 date-time such as 2026-12-04T08:00:00Z (got '{s}')"
                ),
            )
        })
}

fn parse_window(w: &TimeWindow<'_>) -> Result<(Option<Timestamp>, Option<Timestamp>), DomainError> {
    let since = w.since.map(|s| parse_time("since", s)).transpose()?;
    let until = w.until.map(|s| parse_time("until", s)).transpose()?;
    if let (Some(s), Some(u)) = (since, until)
        && s > u
    {
        return Err(DomainError::invalid(
            "until",
            "until must not be before since",
        ));
    }
    Ok((since, until))
}

/// Longest field name accepted in a request (Munic's are far shorter).
pub const MAX_FIELD_NAME_CHARS: usize = 128;

fn check_field_name(arg: &str, name: &str) -> Result<(), DomainError> {
    if name.trim().is_empty() || name.chars().count() > MAX_FIELD_NAME_CHARS {
        return Err(DomainError::invalid(
            arg,
            format!(
                "a field name has 1 to {MAX_FIELD_NAME_CHARS} characters, e.g. GPS_SPEED (got {} characters)",
                name.chars().count()
            ),
        ));
    }
    Ok(())
}

fn check_fields(fields: Option<&[String]>) -> Result<(), DomainError> {
    let Some(f) = fields else { return Ok(()) };
    if f.len() > MAX_FIELD_FILTER {
        return Err(DomainError::invalid(
            "fields",
            format!("fields may name at most {MAX_FIELD_FILTER} fields"),
        ));
    }
    f.iter().try_for_each(|n| check_field_name("fields", n))
}

fn after_time_id(req: &PageRequest) -> Result<Option<(i64, i64)>, DomainError> {
    match &req.after {
        None => Ok(None),
        Some(Position::TimeId(t, i)) => Ok(Some((*t, *i))),
        Some(_) => Err(DomainError::invalid(
            "page_id",
            "page_id is not a cursor of this list",
        )),
    }
}

impl Ekko {
    /// A device the caller may see.
    pub async fn device(&self, caller: Option<&Caller>, id: &str) -> Result<Device, DomainError> {
        let caller = require(caller)?;
        let imei = self.owned_device(caller, id).await?;
        self.require_registered(&imei).await
    }

    /// A device's tracks recorded in the window, oldest first, a page at a time. With
    /// `fields`, each track carries only those fields (tracks are still listed when they
    /// carry none of them: their time and position are data too).
    pub async fn device_tracks(
        &self,
        caller: Option<&Caller>,
        id: &str,
        window: TimeWindow<'_>,
        fields: Option<&[String]>,
        page: PageArgs<'_>,
    ) -> Result<Page<Track>, DomainError> {
        let caller = require(caller)?;
        let imei = self.owned_device(caller, id).await?;
        check_fields(fields)?;
        let (since, until) = parse_window(&window)?;
        // The cursor names the device: one device's cursor cannot page another's tracks.
        let list = format!("tracks of {imei}");
        let req = PageRequest::parse(&list, TRACK_PAGES, page.page_size, page.page_id)?;
        let w = TrackWindow {
            since,
            until,
            after: after_time_id(&req)?,
            limit: req.fetch(),
        };
        let mut items = self.store.tracks_in_window(&imei, &w).await?;
        if let Some(names) = fields {
            for t in &mut items {
                t.fields.retain(|f| names.contains(&f.name));
            }
        }
        let count = self.store.count_tracks(&imei, since, until).await?;
        Ok(req.page(&list, items, Some(count), |t| {
            Position::TimeId(t.recorded_at.timestamp_millis(), t.id)
        }))
    }

    /// The last known value of each field (of `fields` only, when given), by name.
    pub async fn device_last_values(
        &self,
        caller: Option<&Caller>,
        id: &str,
        fields: Option<&[String]>,
    ) -> Result<Vec<LastValue>, DomainError> {
        let caller = require(caller)?;
        let imei = self.owned_device(caller, id).await?;
        check_fields(fields)?;
        let mut values = self.store.last_values(&imei).await?;
        if let Some(names) = fields {
            // Only the named fields, in the order they were asked for.
            values.retain(|v| names.contains(&v.name));
            values.sort_by_key(|v| names.iter().position(|n| *n == v.name));
        }
        Ok(values)
    }

    /// The most recently recorded track with a position (`None` before the first fix).
    pub async fn device_last_position(
        &self,
        caller: Option<&Caller>,
        id: &str,
    ) -> Result<Option<Track>, DomainError> {
        let caller = require(caller)?;
        let imei = self.owned_device(caller, id).await?;
        Ok(self.store.last_positioned_track(&imei).await?)
    }

    /// One field's values in the window, oldest first, a page at a time (the columnar form
    /// for long numeric series).
    pub async fn device_readings(
        &self,
        caller: Option<&Caller>,
        id: &str,
        field: &str,
        window: TimeWindow<'_>,
        page: PageArgs<'_>,
    ) -> Result<Page<Reading>, DomainError> {
        let caller = require(caller)?;
        let imei = self.owned_device(caller, id).await?;
        let field = field.trim();
        check_field_name("field", field)?;
        let (since, until) = parse_window(&window)?;
        // The cursor names the device and the field: it continues only the series it came from.
        let list = format!("readings of {field} of {imei}");
        let req = PageRequest::parse(&list, READING_PAGES, page.page_size, page.page_id)?;
        let w = TrackWindow {
            since,
            until,
            after: after_time_id(&req)?,
            limit: req.fetch(),
        };
        let items = self.store.readings(&imei, field, &w).await?;
        let count = self
            .store
            .count_readings(&imei, field, since, until)
            .await?;
        Ok(req.page(&list, items, Some(count), |r| {
            Position::TimeId(r.recorded_at.timestamp_millis(), r.track_id)
        }))
    }
}
