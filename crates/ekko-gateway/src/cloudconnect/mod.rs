//! CloudConnect: Munic's webhook event format, so a real Munic webhook (or anything speaking
//! its format) can push device data into Ekko over HTTP.
//!
//! `POST /ingest/cloudconnect` (on the main API listener) takes a JSON array of events
//! `{meta: {account, event}, payload}` where `event` is `track`, `presence`, `message` or
//! `poke` (ekko-api.md §6.2). It is authenticated by an integration secret
//! (`Authorization: Bearer <secret>`, from `ekko integration create`), and accepts events for
//! the integration's account's devices only.
//!
//! - [`decode`] is pure: body → events. Track `loc` is `[longitude, latitude]`; field values
//!   `{"b64_value": ...}` are decoded by the field dictionary ([`decode::field_type`]: integers
//!   big-endian and sign-extended by their length, booleans, Latin-1 strings, doubles); a field
//!   not in the dictionary keeps its base64 text. `recorded_at_ms` wins over `recorded_at`.
//!   `meta.account` is not used: the integration decides the account. Track events are read
//!   by a fast path (`fast_track`: borrowed structs instead of `serde_json::Value`) that hands
//!   anything irregular back to the reference decoder, so answers and error messages are the
//!   reference's.
//! - [`listener`] answers:
//!   - 401 for a missing or wrong secret;
//!   - 400 with `errors: [{index, detail}]` when any event is malformed, 403 with the same list
//!     when any event names a device that is unknown, not the account's or suspended: **nothing is stored
//!     from a refused batch**;
//!   - 200 `{stored, skipped: [{index, reason}]}` once every event is durably stored, in order
//!     (consecutive tracks in one transaction through `Ekko::ingest_tracks`, so a resent batch
//!     does not store its tracks twice).
//!     Well-formed events Ekko does not store (an unknown event kind, a presence without asset)
//!     are listed in `skipped`, never dropped silently;
//!   - 409 if a device changed (suspended, moved, deleted) after the batch was authorized, 503
//!     if storage fails midway: the events before the failing one are stored (its index is
//!     in the answer); a resend does not duplicate tracks, but may duplicate presence events,
//!     messages and pokes.

pub mod decode;
mod fast_track;
pub mod listener;

pub use decode::{Batch, DecodeError, Event, decode_batch};
pub use listener::router;
