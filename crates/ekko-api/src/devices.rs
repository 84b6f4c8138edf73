//! Devices and their data: `device(id)`, `devices` (paged), and on `Device` the history
//! (`tracks`, paged), the current state (`last_values`, `last_position`) and one field as a
//! columnar series (`readings`). Munic paging: `XxxPaged { count next list }`, `page_size`,
//! `page_id`. Every resolver hands the caller to the domain, which decides access.

use async_graphql::{Context, ID, Json, Object, Result, SimpleObject};
use ekko_core::device::Device;
use ekko_core::history::LastValue;
use ekko_core::paging::Page;
use ekko_core::service::history::{PageArgs, TimeWindow};
use ekko_core::time::rfc3339;

use crate::errors::to_graphql;
use crate::schema::{CoordinatesObject, TrackFieldObject, TrackObject, caller, ekko};

/// A device (an OBD dongle or tracker), identified by its IMEI.
pub struct DeviceObject(pub Device);

fn ids(fields: &Option<Vec<String>>) -> Option<&[String]> {
    fields.as_deref()
}

#[Object(name = "Device")]
impl DeviceObject {
    /// The device's IMEI (its id everywhere in the API).
    async fn id(&self) -> ID {
        ID(self.0.imei.to_string())
    }
    /// The 15-digit IMEI.
    async fn imei(&self) -> &str {
        self.0.imei.as_str()
    }
    /// When the device was registered (RFC 3339 UTC).
    #[graphql(name = "created_at")]
    async fn created_at(&self) -> String {
        rfc3339(&self.0.created_at)
    }
    async fn name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }
    /// The manufacturer's serial number.
    async fn serial(&self) -> Option<&str> {
        self.0.serial.as_deref()
    }
    /// `active` (its data is taken in) or `suspended` (refused at ingestion).
    async fn status(&self) -> &str {
        self.0.status.as_str()
    }
    /// When the newest record taken in from the device was recorded (null before the first).
    #[graphql(name = "last_contact")]
    async fn last_contact(&self) -> Option<String> {
        self.0.last_contact.as_ref().map(rfc3339)
    }
    #[graphql(name = "group_id")]
    async fn group_id(&self) -> ID {
        ID(self.0.group.to_string())
    }
    async fn group(&self, ctx: &Context<'_>) -> Result<crate::fleet::GroupObject> {
        ekko(ctx)
            .group(caller(ctx), &self.0.group.to_string())
            .await
            .map(crate::fleet::GroupObject)
            .map_err(to_graphql)
    }
    #[graphql(name = "organization_id")]
    async fn organization_id(&self) -> ID {
        ID(self.0.organization.to_string())
    }
    /// The vehicle the device is installed in now (null when none, or one you cannot see).
    async fn vehicle(&self, ctx: &Context<'_>) -> Result<Option<crate::fleet::VehicleObject>> {
        let history = ekko(ctx)
            .device_installations(caller(ctx), self.0.imei.as_str())
            .await
            .map_err(to_graphql)?;
        let Some(open) = history.into_iter().find(|i| i.removed_at.is_none()) else {
            return Ok(None);
        };
        ekko(ctx)
            .vehicle(caller(ctx), &open.vehicle.to_string())
            .await
            .map(|v| Some(crate::fleet::VehicleObject(v)))
            .map_err(to_graphql)
    }
    /// Every vehicle the device was installed in, newest first.
    async fn installations(
        &self,
        ctx: &Context<'_>,
    ) -> Result<Vec<crate::fleet::InstallationObject>> {
        let history = ekko(ctx)
            .device_installations(caller(ctx), self.0.imei.as_str())
            .await
            .map_err(to_graphql)?;
        Ok(history
            .into_iter()
            .map(crate::fleet::InstallationObject)
            .collect())
    }

    /// The tracks the device recorded in `[since, until)` (RFC 3339; both optional), oldest
    /// first. `fields` keeps only the named fields in each track. `page_size`: default 100,
    /// at most 1000.
    #[graphql(complexity = "paged_complexity(page_size, 100, 1000, 4, child_complexity)")]
    async fn tracks(
        &self,
        ctx: &Context<'_>,
        since: Option<String>,
        until: Option<String>,
        fields: Option<Vec<String>>,
        #[graphql(name = "page_size")] page_size: Option<i64>,
        #[graphql(name = "page_id")] page_id: Option<ID>,
    ) -> Result<TrackPaged> {
        let page = ekko(ctx)
            .device_tracks(
                caller(ctx),
                self.0.imei.as_str(),
                TimeWindow {
                    since: since.as_deref(),
                    until: until.as_deref(),
                },
                ids(&fields),
                PageArgs {
                    page_size,
                    page_id: page_id.as_ref().map(|p| p.as_str()),
                },
            )
            .await
            .map_err(to_graphql)?;
        Ok(TrackPaged::from(page))
    }

    /// The last known value of each field (only `fields`, when given), whenever it arrived:
    /// devices send a field only when it changes. Each carries the position and time of the
    /// record it came with.
    #[graphql(name = "last_values")]
    async fn last_values(
        &self,
        ctx: &Context<'_>,
        fields: Option<Vec<String>>,
    ) -> Result<Vec<TrackFieldObject>> {
        let values = ekko(ctx)
            .device_last_values(caller(ctx), self.0.imei.as_str(), ids(&fields))
            .await
            .map_err(to_graphql)?;
        Ok(values.iter().map(last_value).collect())
    }

    /// Where the device last had a GPS fix (null before its first one).
    #[graphql(name = "last_position")]
    async fn last_position(&self, ctx: &Context<'_>) -> Result<Option<CoordinatesObject>> {
        let track = ekko(ctx)
            .device_last_position(caller(ctx), self.0.imei.as_str())
            .await
            .map_err(to_graphql)?;
        Ok(track.and_then(|t| {
            t.coordinates.map(|c| CoordinatesObject {
                lat: c.lat,
                lng: c.lng,
                time: rfc3339(&t.recorded_at),
            })
        }))
    }

    /// One field's values in `[since, until)`, oldest first, as parallel arrays (the compact
    /// form for long series). `page_size`: default 1000, at most 10000.
    #[graphql(complexity = "paged_complexity(page_size, 1000, 10000, 10, child_complexity)")]
    async fn readings(
        &self,
        ctx: &Context<'_>,
        field: String,
        since: Option<String>,
        until: Option<String>,
        #[graphql(name = "page_size")] page_size: Option<i64>,
        #[graphql(name = "page_id")] page_id: Option<ID>,
    ) -> Result<ReadingsPaged> {
        let page = ekko(ctx)
            .device_readings(
                caller(ctx),
                self.0.imei.as_str(),
                &field,
                TimeWindow {
                    since: since.as_deref(),
                    until: until.as_deref(),
                },
                PageArgs {
                    page_size,
                    page_id: page_id.as_ref().map(|p| p.as_str()),
                },
            )
            .await
            .map_err(to_graphql)?;
        Ok(ReadingsPaged {
            field: field.trim().to_owned(),
            count: page.count.map(saturating_i64),
            next: page.next.map(ID),
            timestamps: page.list.iter().map(|r| rfc3339(&r.recorded_at)).collect(),
            values: page.list.iter().map(|r| Json(r.value.to_json())).collect(),
            track_ids: page
                .list
                .iter()
                .map(|r| ID(r.track_id.to_string()))
                .collect(),
        })
    }
}

fn last_value(v: &LastValue) -> TrackFieldObject {
    TrackFieldObject::new(
        &v.name,
        &v.value,
        v.coordinates.map(|c| CoordinatesObject {
            lat: c.lat,
            lng: c.lng,
            time: rfc3339(&v.recorded_at),
        }),
    )
}

/// What a paged field costs against the query's complexity budget: its selection's cost times
/// the page size, scaled down by `per` (so a whole page of tracks costs like `page/per` single
/// objects). Without it, 100 aliases of a 1000-track page would pass as 100 cheap fields. The
/// page size is clamped here; out-of-range values get their own clear error when resolved.
pub(crate) fn paged_complexity(
    page_size: Option<i64>,
    default: i64,
    max: i64,
    per: usize,
    child_complexity: usize,
) -> usize {
    let size = page_size.unwrap_or(default).clamp(1, max) as usize;
    1 + size.saturating_mul(child_complexity) / per
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A page of devices.
#[derive(SimpleObject)]
#[graphql(name = "DevicePaged")]
pub struct DevicePaged {
    /// Devices over all pages.
    pub(crate) count: Option<i64>,
    /// Pass as `page_id` for the next page; null on the last page.
    next: Option<ID>,
    list: Vec<DeviceObject>,
}

impl From<Page<Device>> for DevicePaged {
    fn from(p: Page<Device>) -> Self {
        DevicePaged {
            count: p.count.map(saturating_i64),
            next: p.next.map(ID),
            list: p.list.into_iter().map(DeviceObject).collect(),
        }
    }
}

/// A page of tracks.
#[derive(SimpleObject)]
#[graphql(name = "TrackPaged")]
pub struct TrackPaged {
    /// Tracks in the window over all pages.
    count: Option<i64>,
    /// Pass as `page_id` for the next page; null on the last page.
    next: Option<ID>,
    list: Vec<TrackObject>,
}

impl From<Page<ekko_core::track::Track>> for TrackPaged {
    fn from(p: Page<ekko_core::track::Track>) -> Self {
        TrackPaged {
            count: p.count.map(saturating_i64),
            next: p.next.map(ID),
            list: p.list.iter().map(TrackObject::from).collect(),
        }
    }
}

/// A page of one field's values, columnar: `timestamps[i]`, `values[i]` and `track_ids[i]`
/// describe the same reading.
#[derive(SimpleObject)]
#[graphql(name = "ReadingsPaged")]
pub struct ReadingsPaged {
    /// The field (Munic name).
    field: String,
    /// Readings in the window over all pages.
    count: Option<i64>,
    /// Pass as `page_id` for the next page; null on the last page.
    next: Option<ID>,
    /// When each value was recorded (RFC 3339 UTC).
    timestamps: Vec<String>,
    /// The values, in Munic units.
    values: Vec<Json<serde_json::Value>>,
    /// The track each value came from.
    #[graphql(name = "track_ids")]
    track_ids: Vec<ID>,
}
