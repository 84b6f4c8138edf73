//! Ports: the interfaces the domain needs from the outside world.
//! Adapters implement them (`ekko-store` for [`Store`], `ekko-bus` for [`Bus`]).

use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Stream;

use crate::account::{Account, NewAccount, ProfileUpdate};
use crate::device::{Device, DeviceUpdate, NewDevice};
use crate::error::StoreError;
use crate::fleet::{
    Group, GroupId, GroupNode, Installation, Invitation, ListFilter, Organization, OrganizationId,
    Role, RoleGrant, Vehicle, VehicleDetails, VehicleId,
};
use crate::history::{LastValue, Reading, TrackWindow};
use crate::ids::{AccountId, Imei};
use crate::notification::{
    DeviceMessage, DeviceNotification, NewMessage, NewPoke, NewPresence, Poke, Presence,
};
use crate::time::Timestamp;
use crate::track::{Track, TrackRecord};

pub type StoreResult<T> = Result<T, StoreError>;

/// A refresh token as stored: only its SHA-256 hash is kept.
#[derive(Clone, Debug, PartialEq)]
pub struct RefreshTokenRecord {
    pub token_hash: String,
    /// All tokens descended from one grant share a family; reuse revokes the family.
    pub family: String,
    pub account: AccountId,
    pub scope: String,
    pub created_at: Timestamp,
}

/// What happened when a refresh token was presented for rotation.
#[derive(Clone, Debug, PartialEq)]
pub enum RotateOutcome {
    /// The token was active; it is now spent and `new` is stored in its place.
    Rotated { account: AccountId, scope: String },
    /// The token was already spent (or revoked): its whole family has now been revoked.
    Reused,
    /// No such token.
    Unknown,
}

/// Durable storage. Every write returns only once it is durable.
#[async_trait]
pub trait Store: FleetStore + Send + Sync + 'static {
    // Accounts (creation and profile edits are in `FleetStore`)
    async fn account_by_id(&self, id: AccountId) -> StoreResult<Option<Account>>;
    async fn account_by_email(&self, normalized_email: &str) -> StoreResult<Option<Account>>;

    // Devices (listing, edits and deletion are in `FleetStore`)
    /// Registers a device; `registered_by` is kept for the record.
    async fn insert_device(
        &self,
        device: &NewDevice,
        registered_by: AccountId,
    ) -> StoreResult<Device>;
    async fn device_by_imei(&self, imei: &Imei) -> StoreResult<Option<Device>>;
    /// Sets (or, with `None`, removes) the SHA-256 of a device's secret.
    async fn set_device_secret_hash(&self, imei: &Imei, hash: Option<&str>) -> StoreResult<()>;
    /// The SHA-256 of the device's secret, when it has one.
    async fn device_secret_hash(&self, imei: &Imei) -> StoreResult<Option<String>>;

    /// Tells every process using this storage that a device changed (after the change is
    /// stored), so that their device caches (`device_cache`) read devices afresh.
    ///
    /// The default does nothing: another process then sees the change within the cache's TTL.
    fn announce_device_change(&self) {}

    /// A stamp that differs after any process announced a device change. Cheap: ingestion
    /// asks for it on every device lookup.
    fn device_change_stamp(&self) -> u64 {
        0
    }

    // Tracks
    async fn insert_track(
        &self,
        record: &TrackRecord,
        received_at: Timestamp,
    ) -> StoreResult<Track>;
    async fn recent_tracks(&self, imei: &Imei, limit: u32) -> StoreResult<Vec<Track>>;
    /// The device's tracks in `window`, oldest first (by `recorded_at`, then id).
    async fn tracks_in_window(&self, imei: &Imei, window: &TrackWindow) -> StoreResult<Vec<Track>>;
    /// How many tracks the device recorded in `[since, until)`.
    async fn count_tracks(
        &self,
        imei: &Imei,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> StoreResult<u64>;
    /// The most recently recorded track that has a position.
    async fn last_positioned_track(&self, imei: &Imei) -> StoreResult<Option<Track>>;
    /// The last value of every field the device ever sent, by name.
    async fn last_values(&self, imei: &Imei) -> StoreResult<Vec<LastValue>>;
    /// The values of field `name` in the tracks of `window`, oldest first.
    async fn readings(
        &self,
        imei: &Imei,
        name: &str,
        window: &TrackWindow,
    ) -> StoreResult<Vec<Reading>>;
    /// How many tracks in `[since, until)` carry field `name`.
    async fn count_readings(
        &self,
        imei: &Imei,
        name: &str,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> StoreResult<u64>;
    /// Stores a batch in one transaction: all of it is durable when this returns, or none of it.
    /// A record whose (device, `recorded_at`, `dedup_key`) is already stored is skipped (a
    /// resend). Returns the newly stored tracks, in the batch's order.
    ///
    /// The default stores one record at a time without de-duplication; adapters override it.
    async fn insert_tracks(
        &self,
        batch: Vec<crate::track::NewTrack>,
        received_at: Timestamp,
    ) -> StoreResult<Vec<Track>> {
        let mut stored = Vec::with_capacity(batch.len());
        for t in &batch {
            stored.push(self.insert_track(&t.record, received_at).await?);
        }
        Ok(stored)
    }

    // Presence events, messages and pokes (durable before they are published; ids from here)
    async fn insert_presence(&self, presence: &NewPresence) -> StoreResult<Presence>;
    async fn insert_message(
        &self,
        message: &NewMessage,
        received_at: Timestamp,
    ) -> StoreResult<DeviceMessage>;
    async fn insert_poke(&self, poke: &NewPoke, received_at: Timestamp) -> StoreResult<Poke>;

    // Integrations and pending devices (see `crate::integration`)
    async fn insert_integration(
        &self,
        integration: &crate::integration::Integration,
    ) -> StoreResult<()>;
    async fn integration_by_id(
        &self,
        id: &str,
    ) -> StoreResult<Option<crate::integration::Integration>>;
    /// Upserts the pending row of (`imei`, `protocol`): first sighting, or one more attempt.
    /// A new row is added only while fewer than `max_rows` exist.
    async fn record_pending_device(
        &self,
        imei: &Imei,
        protocol: &str,
        at: Timestamp,
        max_rows: i64,
    ) -> StoreResult<()>;
    /// Pending devices that are still not registered, most recently seen first.
    async fn pending_devices(&self) -> StoreResult<Vec<crate::integration::PendingDevice>>;

    // Refresh tokens
    async fn insert_refresh_token(&self, token: &RefreshTokenRecord) -> StoreResult<()>;
    /// Atomically: if `presented_hash` is active, mark it spent and store `replacement`
    /// (same family); if it is spent, revoke its whole family. Two concurrent rotations of one
    /// token: exactly one gets `Rotated`.
    async fn rotate_refresh_token(
        &self,
        presented_hash: &str,
        replacement: &RefreshTokenRecord,
    ) -> StoreResult<RotateOutcome>;
}

/// How many things a group holds directly (a group is deleted only when empty).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GroupContents {
    pub groups: u64,
    pub devices: u64,
    pub vehicles: u64,
}

/// Storage of the fleet graph (see `crate::fleet`).
#[async_trait]
pub trait FleetStore: Send + Sync + 'static {
    /// Stores a new account, in one transaction with a new organization named
    /// `organization_name`, its root group, and the account's admin role there.
    async fn insert_account(
        &self,
        account: &NewAccount,
        organization_name: &str,
    ) -> StoreResult<Account>;
    async fn update_account_profile(
        &self,
        id: AccountId,
        update: &ProfileUpdate,
        at: Timestamp,
    ) -> StoreResult<Option<Account>>;
    async fn record_sign_in(&self, id: AccountId, at: Timestamp) -> StoreResult<()>;
    async fn organization(&self, id: OrganizationId) -> StoreResult<Option<Organization>>;
    /// The root group of an organization.
    async fn root_group(&self, organization: OrganizationId) -> StoreResult<Option<Group>>;

    // Roles and the trees they apply to
    async fn roles_of(&self, account: AccountId) -> StoreResult<Vec<RoleGrant>>;
    /// Every group of these organizations, as tree nodes.
    async fn group_nodes(&self, organizations: &[OrganizationId]) -> StoreResult<Vec<GroupNode>>;
    /// Grants (or changes) a role. Never demotes the last admin of a root group:
    /// `Conflict` then (checked in the same statement, so concurrent demotions cannot both
    /// pass).
    async fn set_role(
        &self,
        account: AccountId,
        group: GroupId,
        role: Role,
        at: Timestamp,
    ) -> StoreResult<()>;
    /// Revokes a role; `false` if there was none. Never the last admin of a root group
    /// (`Conflict`, atomically as for `set_role`).
    async fn remove_role(&self, account: AccountId, group: GroupId) -> StoreResult<bool>;
    /// The roles held on these groups.
    async fn roles_on(&self, groups: &[GroupId]) -> StoreResult<Vec<RoleGrant>>;
    async fn insert_invitation(&self, invitation: &Invitation) -> StoreResult<()>;
    /// Spends an invitation: removes and returns it (once; `None` when unknown or spent).
    async fn take_invitation(&self, code_hash: &str) -> StoreResult<Option<Invitation>>;
    /// Accounts holding a role on one of `filter.groups`, by id after `after`.
    async fn accounts_page(
        &self,
        filter: &ListFilter,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Account>>;
    async fn count_accounts(&self, filter: &ListFilter) -> StoreResult<u64>;

    // Groups
    async fn insert_group(
        &self,
        organization: OrganizationId,
        parent: GroupId,
        name: &str,
        description: Option<&str>,
        at: Timestamp,
    ) -> StoreResult<Group>;
    async fn group(&self, id: GroupId) -> StoreResult<Option<Group>>;
    /// Writes a group's name, description, parent and `updated_at`. `Conflict` (and nothing
    /// written) when the new parent is the group or below it, checked in the write's own
    /// transaction.
    async fn update_group(&self, group: &Group) -> StoreResult<()>;
    async fn delete_group(&self, id: GroupId) -> StoreResult<()>;
    async fn group_contents(&self, id: GroupId) -> StoreResult<GroupContents>;
    /// Groups among `filter.groups`, by id after `after`.
    async fn groups_page(
        &self,
        filter: &ListFilter,
        after: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<Group>>;
    async fn count_groups(&self, filter: &ListFilter) -> StoreResult<u64>;

    // Devices
    async fn update_device(&self, imei: &Imei, update: &DeviceUpdate) -> StoreResult<()>;
    /// Deletes a device and everything recorded from it.
    async fn delete_device(&self, imei: &Imei) -> StoreResult<()>;
    /// Devices in `filter.groups` by IMEI after `after`.
    async fn devices_page(
        &self,
        filter: &ListFilter,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Device>>;
    async fn count_devices(&self, filter: &ListFilter) -> StoreResult<u64>;

    // Vehicles
    async fn insert_vehicle(
        &self,
        organization: OrganizationId,
        group: GroupId,
        details: &VehicleDetails,
        at: Timestamp,
    ) -> StoreResult<Vehicle>;
    async fn vehicle(&self, id: VehicleId) -> StoreResult<Option<Vehicle>>;
    /// Writes a vehicle's group, details and `updated_at`.
    async fn update_vehicle(&self, vehicle: &Vehicle) -> StoreResult<()>;
    /// Deletes a vehicle and its installation history.
    async fn delete_vehicle(&self, id: VehicleId) -> StoreResult<()>;
    async fn vehicles_page(
        &self,
        filter: &ListFilter,
        after: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<Vehicle>>;
    async fn count_vehicles(&self, filter: &ListFilter) -> StoreResult<u64>;

    // Installations
    /// In one transaction: closes the device's open installation and the vehicle's, then
    /// opens (device, vehicle) at `at`.
    async fn install(
        &self,
        imei: &Imei,
        vehicle: VehicleId,
        at: Timestamp,
    ) -> StoreResult<Installation>;
    /// Closes the device's open installation; `None` if it had none.
    async fn uninstall(&self, imei: &Imei, at: Timestamp) -> StoreResult<Option<Installation>>;
    /// Newest first.
    async fn installations_of_device(&self, imei: &Imei) -> StoreResult<Vec<Installation>>;
    /// Newest first.
    async fn installations_of_vehicle(&self, vehicle: VehicleId) -> StoreResult<Vec<Installation>>;
}

/// What the bus carries: a notification, and the group its device was in when the
/// notification was stored. Subscriptions check it against the groups their caller could see,
/// so a device moved or given away stops flowing without a store read per delivery.
#[derive(Clone, Debug, PartialEq)]
pub struct Published {
    pub group: GroupId,
    pub notification: DeviceNotification,
}

impl Published {
    pub fn device(&self) -> &Imei {
        self.notification.device()
    }
}

/// One item a bus subscription yields.
#[derive(Clone, Debug)]
pub enum BusItem {
    Notification(Arc<Published>),
    /// The subscriber fell so far behind that its bounded queue filled: it has been dropped
    /// from the bus, and the stream ends after this item.
    Overflowed,
    /// The caller may no longer see this device (it was given to another account): the
    /// subscription ends after this item, and nothing stored after the change reached it.
    AccessWithdrawn(Imei),
}

pub type BusStream = Pin<Box<dyn Stream<Item = BusItem> + Send>>;

/// Live fan-out of notifications from ingestion to subscribers.
pub trait Bus: Send + Sync + 'static {
    /// Never blocks: a subscriber whose queue is full is dropped, not waited for.
    fn publish(&self, notification: Arc<Published>);
    /// Registers interest in `devices` *before returning*: anything published after this call
    /// returns is delivered. Dropping the stream unsubscribes.
    fn subscribe(&self, devices: &[Imei]) -> BusStream;
}
