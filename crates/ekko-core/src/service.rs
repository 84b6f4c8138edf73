//! The domain service: the functions every transport (GraphQL, Phoenix, gateway, CLI) calls.
//! Authorization is decided here and nowhere else.

use std::sync::Arc;

pub mod fleet;
pub mod history;
pub mod ingest;

use crate::account::{Account, NewAccount, ProfileChanges, normalize_email, validate_full_name};
use crate::device::{Device, DeviceUpdate, NewDevice};
use crate::device_cache::{DeviceCache, KnownDevice};
use crate::error::DomainError;
use crate::fleet::{Access, DeviceStatus, GroupId, Role};
use crate::ids::{AccountId, Imei};
use crate::notification::{
    DeviceMessage, DeviceNotification, MAX_NAME_CHARS, MAX_PAYLOAD_BYTES, MessageKind, NewMessage,
    NewPoke, NewPresence, Poke, Presence, PresenceKind,
};
use crate::ports::{Bus, BusItem, BusStream, Published, Store};
use crate::time::now_ms;
use crate::track::{MAX_FIELDS_PER_RECORD, Track, TrackRecord};

/// Who is calling: an authenticated account and the scopes its token grants.
#[derive(Clone, Debug, PartialEq)]
pub struct Caller {
    pub account: AccountId,
    pub scopes: Vec<String>,
}

fn not_registered(imei: &Imei) -> DomainError {
    DomainError::NotFound(format!(
        "device {imei} is not registered; register it first (ekko device create --imei {imei} --account EMAIL)"
    ))
}

/// Most devices one subscription may name.
pub const MAX_DEVICES_PER_SUBSCRIPTION: usize = 1000;

/// The domain, wired to its adapters. Cheap to clone.
#[derive(Clone)]
pub struct Ekko {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    /// Bumped by every operation that can change who sees what (roles, group moves, device
    /// moves and deletions): live subscriptions recompute their rights when it changed.
    rights_epoch: Arc<std::sync::atomic::AtomicU64>,
    /// Devices as ingestion sees them (`device_cache`).
    devices: Arc<DeviceCache>,
}

fn require(caller: Option<&Caller>) -> Result<&Caller, DomainError> {
    caller.ok_or_else(|| {
        DomainError::Unauthenticated(
            "authentication required: send 'Authorization: Bearer <access token>' (get one from POST /oauth/token)"
                .into(),
        )
    })
}

impl Ekko {
    pub fn new(store: Arc<dyn Store>, bus: Arc<dyn Bus>) -> Self {
        Ekko {
            store,
            bus,
            rights_epoch: Default::default(),
            devices: Default::default(),
        }
    }

    pub(crate) fn rights_epoch(&self) -> u64 {
        self.rights_epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Something changed who sees what: live subscriptions recheck at their next delivery.
    pub(crate) fn rights_changed(&self) {
        self.rights_epoch
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// A device changed (stored already): ingestion reads it afresh.
    pub(crate) fn device_changed(&self) {
        self.devices.changed();
        self.store.announce_device_change();
    }

    /// The device as ingestion sees it: from the cache when read within the last second and
    /// unchanged since, in this process or another (`device_cache`), otherwise from the store.
    /// `None`: not registered.
    pub(crate) async fn known_device(
        &self,
        imei: &Imei,
    ) -> Result<Option<KnownDevice>, DomainError> {
        self.devices.observe_stamp(self.store.device_change_stamp());
        if let Some(known) = self.devices.get(imei) {
            return Ok(Some(known));
        }
        let generation = self.devices.generation();
        let Some(device) = self.store.device_by_imei(imei).await? else {
            return Ok(None);
        };
        let known = KnownDevice {
            device,
            secret_hash: None,
        };
        self.devices.remember(generation, known.clone());
        Ok(Some(known))
    }

    /// The SHA-256 of the device's secret (`None`: it has none, or it is not registered),
    /// through the same cache as [`Ekko::known_device`].
    pub(crate) async fn device_secret_hash(
        &self,
        imei: &Imei,
    ) -> Result<Option<String>, DomainError> {
        let generation = self.devices.generation();
        let Some(mut known) = self.known_device(imei).await? else {
            return Ok(None);
        };
        if let Some(hash) = known.secret_hash {
            return Ok(hash);
        }
        let hash = self.store.device_secret_hash(imei).await?;
        known.secret_hash = Some(hash.clone());
        self.devices.remember(generation, known);
        Ok(hash)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    // ---- accounts ----

    /// Creates an account. `password_hash` is already an argon2id PHC string (Connect hashes).
    pub async fn create_account(
        &self,
        email: &str,
        full_name: &str,
        password_hash: String,
    ) -> Result<Account, DomainError> {
        let email = normalize_email(email)?;
        let full_name = validate_full_name(full_name)?;
        let account = NewAccount {
            id: AccountId::new_random(),
            email,
            full_name,
            password_hash,
            created_at: now_ms(),
        };
        // A new account founds its own organization, named after it, unless it was invited.
        match self
            .store
            .insert_account(&account, &account.full_name)
            .await
        {
            Ok(stored) => Ok(stored),
            Err(crate::error::StoreError::Conflict(_)) => Err(DomainError::Conflict(format!(
                "an account with email {} already exists",
                account.email
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// For Connect: a password sign-in succeeded (kept as `last_sign_in_at`). Best effort.
    pub async fn record_sign_in(&self, account: AccountId) {
        if let Err(e) = self.store.record_sign_in(account, now_ms()).await {
            tracing::warn!(error = %e, "could not record a sign-in");
        }
    }

    /// For Connect's password grant: the account behind an email, if any. Not an API call.
    pub async fn account_for_sign_in(&self, email: &str) -> Result<Option<Account>, DomainError> {
        let Ok(email) = normalize_email(email) else {
            return Ok(None);
        };
        Ok(self.store.account_by_email(&email).await?)
    }

    /// For Connect's refresh grant and token checks: an account by id. Not an API call.
    pub async fn account_by_id(&self, id: AccountId) -> Result<Option<Account>, DomainError> {
        Ok(self.store.account_by_id(id).await?)
    }

    /// `account(id)`: `None` or `"me"` is the caller. Another account is visible when it
    /// holds a role on a group the caller can see; an invisible one is "not found", not
    /// "forbidden", so that ids cannot be probed.
    pub async fn account(
        &self,
        caller: Option<&Caller>,
        id: Option<&str>,
    ) -> Result<Account, DomainError> {
        let caller = require(caller)?;
        let target = match id.map(str::trim) {
            None | Some("me") | Some("") => caller.account,
            Some(other) => AccountId::parse(other)?,
        };
        let not_found = || DomainError::NotFound(format!("no account {target} visible to you"));
        if target != caller.account && !self.account_visible(caller, target).await? {
            return Err(not_found());
        }
        self.store
            .account_by_id(target)
            .await?
            .ok_or_else(not_found)
    }

    /// `account_update`: the caller edits their own account (every field of
    /// [`ProfileChanges`]; an email changes only through Connect).
    pub async fn update_account(
        &self,
        caller: Option<&Caller>,
        changes: &ProfileChanges<'_>,
    ) -> Result<Account, DomainError> {
        let caller = require(caller)?;
        let update = changes.validate()?;
        self.store
            .update_account_profile(caller.account, &update, now_ms())
            .await?
            .ok_or_else(|| DomainError::NotFound("your account no longer exists".into()))
    }

    /// `account_update(full_name:)` alone.
    pub async fn update_own_full_name(
        &self,
        caller: Option<&Caller>,
        full_name: &str,
    ) -> Result<Account, DomainError> {
        validate_full_name(full_name)?;
        self.update_account(
            caller,
            &ProfileChanges {
                full_name: Some(full_name),
                ..Default::default()
            },
        )
        .await
    }

    // ---- devices ----

    /// The account with this email (for administrator commands).
    pub async fn account_by_email(&self, email: &str) -> Result<Account, DomainError> {
        let email = normalize_email(email)?;
        self.store
            .account_by_email(&email)
            .await?
            .ok_or_else(|| DomainError::NotFound(format!("no account with email {email}")))
    }

    /// Registers a device in the root group of the organization of the account with
    /// `owner_email` (an administrator's operation: the CLI).
    pub async fn create_device(
        &self,
        imei: &str,
        owner_email: &str,
    ) -> Result<Device, DomainError> {
        let imei = Imei::parse(imei)?;
        let owner = self.account_by_email(owner_email).await?;
        let root = self.root_group_of(&owner).await?;
        self.register_device(
            NewDevice {
                imei,
                group: root,
                name: None,
                serial: None,
                created_at: now_ms(),
            },
            owner.id,
        )
        .await
    }

    pub(crate) async fn register_device(
        &self,
        device: NewDevice,
        by: AccountId,
    ) -> Result<Device, DomainError> {
        match self.store.insert_device(&device, by).await {
            Ok(d) => Ok(d),
            Err(crate::error::StoreError::Conflict(_)) => Err(DomainError::Conflict(format!(
                "device {} is already registered",
                device.imei
            ))),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn root_group_of(&self, account: &Account) -> Result<GroupId, DomainError> {
        Ok(self
            .store
            .root_group(account.organization)
            .await?
            .ok_or_else(|| {
                DomainError::Internal(format!(
                    "the organization of {} has no root group",
                    account.email
                ))
            })?
            .id)
    }

    /// Gives a registered device to another organization: into the root group of the account
    /// with `new_owner_email` (an administrator's act: the CLI). From then on its data flows
    /// to that organization only: live subscriptions of those who could see it before end with
    /// [`BusItem::AccessWithdrawn`] at the first notification stored after the change.
    /// `changed` is false when the device was already there.
    pub async fn transfer_device(
        &self,
        imei: &str,
        new_owner_email: &str,
    ) -> Result<(Device, bool), DomainError> {
        let imei = Imei::parse(imei)?;
        let owner = self.account_by_email(new_owner_email).await?;
        let root = self.root_group_of(&owner).await?;
        let device = self.require_registered(&imei).await?;
        if device.group == root {
            return Ok((device, false));
        }
        self.rights_changed();
        self.store
            .update_device(
                &imei,
                &DeviceUpdate {
                    group: Some(root),
                    ..Default::default()
                },
            )
            .await?;
        self.device_changed();
        Ok((self.require_registered(&imei).await?, true))
    }

    /// Publishes a stored notification of a device that is in `group`.
    fn publish(&self, group: GroupId, notification: DeviceNotification) {
        self.bus.publish(Arc::new(Published {
            group,
            notification,
        }));
    }

    /// What `account` may do, group by group.
    pub async fn access_of(&self, account: AccountId) -> Result<Access, DomainError> {
        Ok(self.scope(account).await?.access)
    }

    /// Can `caller` see this device? Unknown and foreign devices look the same to the caller.
    async fn visible_device(&self, caller: &Caller, imei: &Imei) -> Result<bool, DomainError> {
        let Some(device) = self.store.device_by_imei(imei).await? else {
            return Ok(false);
        };
        Ok(self
            .access_of(caller.account)
            .await?
            .can(device.group, Role::Viewer))
    }

    // ---- ingestion ----

    /// Stores a record from a device durably, then publishes it. The caller (a gateway)
    /// acknowledges to the device only after this returns `Ok`.
    pub async fn ingest_track(&self, mut record: TrackRecord) -> Result<Track, DomainError> {
        if record.fields.len() > MAX_FIELDS_PER_RECORD {
            return Err(DomainError::invalid(
                "fields",
                format!("a record may carry at most {MAX_FIELDS_PER_RECORD} fields"),
            ));
        }
        let device = self.require_active(&record.imei).await?;
        let now = now_ms();
        ingest::flag_timing(&mut record, &now);
        let track = self.store.insert_track(&record, now).await?;
        self.publish(device.group, DeviceNotification::Track(track.clone()));
        Ok(track)
    }

    /// The latest tracks of a device the caller can see, newest first.
    pub async fn recent_tracks(
        &self,
        caller: Option<&Caller>,
        imei: &str,
        limit: u32,
    ) -> Result<Vec<Track>, DomainError> {
        let caller = require(caller)?;
        let imei = Imei::parse(imei)?;
        if !self.visible_device(caller, &imei).await? {
            return Err(DomainError::NotFound(format!(
                "no device {imei} visible to you"
            )));
        }
        Ok(self.store.recent_tracks(&imei, limit.min(1000)).await?)
    }

    // ---- presence, messages, pokes ----

    /// A registered device whose data is taken in (not suspended). Ingestion paths call this;
    /// it reads through the device cache (`device_cache`).
    pub(crate) async fn require_active(
        &self,
        imei: &Imei,
    ) -> Result<crate::device::Device, DomainError> {
        let device = self
            .known_device(imei)
            .await?
            .ok_or_else(|| not_registered(imei))?
            .device;
        if device.status == DeviceStatus::Suspended {
            return Err(DomainError::NotFound(format!(
                "device {imei} is suspended: its data is refused until a manager sets its status back to active"
            )));
        }
        Ok(device)
    }

    pub(crate) async fn require_registered(
        &self,
        imei: &Imei,
    ) -> Result<crate::device::Device, DomainError> {
        self.store
            .device_by_imei(imei)
            .await?
            .ok_or_else(|| not_registered(imei))
    }

    /// Records that a registered device connected, disconnected, failed to connect or was
    /// declared, durably, then publishes it. Called by gateways (never by API callers).
    pub async fn record_presence(
        &self,
        imei: &Imei,
        kind: PresenceKind,
        reason: Option<&str>,
        protocol: Option<&str>,
    ) -> Result<Presence, DomainError> {
        let reason = reason.map(|r| check_name("reason", r)).transpose()?;
        let protocol = protocol.map(|p| check_name("protocol", p)).transpose()?;
        let device = self.require_active(imei).await?;
        let presence = self
            .store
            .insert_presence(&NewPresence {
                imei: imei.clone(),
                kind,
                reason,
                protocol,
                time: now_ms(),
            })
            .await?;
        self.publish(device.group, DeviceNotification::Presence(presence.clone()));
        Ok(presence)
    }

    /// Stores a device ↔ cloud message durably (the store assigns its id), then publishes it.
    /// Called by gateways and cloud connectors; API callers use [`Ekko::send_message`].
    pub async fn ingest_message(&self, message: NewMessage) -> Result<DeviceMessage, DomainError> {
        check_name("channel", &message.channel)?;
        check_name("sender", &message.sender)?;
        check_name("recipient", &message.recipient)?;
        check_payload(&message.payload)?;
        let device = self.require_active(&message.imei).await?;
        let stored = self.store.insert_message(&message, now_ms()).await?;
        self.publish(device.group, DeviceNotification::Message(stored.clone()));
        Ok(stored)
    }

    /// Stores a poke durably (the store assigns its id), then publishes it.
    /// Called by cloud connectors; API callers use [`Ekko::send_poke`].
    pub async fn ingest_poke(&self, poke: NewPoke) -> Result<Poke, DomainError> {
        check_name("sender", &poke.sender)?;
        check_name("namespace", &poke.namespace)?;
        check_payload(&poke.payload)?;
        let device = self.require_active(&poke.imei).await?;
        let stored = self.store.insert_poke(&poke, now_ms()).await?;
        self.publish(device.group, DeviceNotification::Poke(stored.clone()));
        Ok(stored)
    }

    /// The caller (the device's owner) sends a message to one of their devices on `channel`.
    /// The sender is the caller's account id, the recipient the device's IMEI.
    pub async fn send_message(
        &self,
        caller: Option<&Caller>,
        device_id: &str,
        channel: &str,
        payload: Vec<u8>,
    ) -> Result<DeviceMessage, DomainError> {
        let caller = require(caller)?;
        let imei = self
            .device_with_role(caller, device_id, Role::Manager)
            .await?
            .imei;
        self.ingest_message(NewMessage {
            recipient: imei.to_string(),
            imei,
            parent_id: None,
            channel: channel.to_owned(),
            kind: MessageKind::Message,
            sender: caller.account.to_string(),
            payload,
            recorded_at: None,
        })
        .await
    }

    /// The caller (the device's owner) pokes one of their devices: "re-read `namespace`".
    /// The sender is the caller's account id.
    pub async fn send_poke(
        &self,
        caller: Option<&Caller>,
        device_id: &str,
        namespace: &str,
        payload: Vec<u8>,
    ) -> Result<Poke, DomainError> {
        let caller = require(caller)?;
        let imei = self
            .device_with_role(caller, device_id, Role::Manager)
            .await?
            .imei;
        self.ingest_poke(NewPoke {
            imei,
            sender: caller.account.to_string(),
            namespace: namespace.to_owned(),
            payload,
        })
        .await
    }

    /// The device `device_id` if the caller can see it; unknown and foreign look the same.
    async fn owned_device(&self, caller: &Caller, device_id: &str) -> Result<Imei, DomainError> {
        Ok(self
            .device_with_role(caller, device_id, Role::Viewer)
            .await?
            .imei)
    }

    /// The device `device_id` if the caller holds at least `needed` on its group. A device the
    /// caller cannot see at all is "not found" (like an unknown one); one it sees with too weak
    /// a role is "forbidden", naming the role needed.
    pub(crate) async fn device_with_role(
        &self,
        caller: &Caller,
        device_id: &str,
        needed: Role,
    ) -> Result<Device, DomainError> {
        let not_found = || {
            // Quoted (an empty id stays visible) and cut short (the id is the caller's input).
            let shown: String = device_id.chars().take(64).collect();
            let more = if shown.len() < device_id.len() {
                "…"
            } else {
                ""
            };
            DomainError::NotFound(format!("no device '{shown}{more}' visible to you"))
        };
        let imei = Imei::parse(device_id).map_err(|_| not_found())?;
        let device = self
            .store
            .device_by_imei(&imei)
            .await?
            .ok_or_else(not_found)?;
        match self.access_of(caller.account).await?.role_on(device.group) {
            None => Err(not_found()),
            Some(r) if r < needed => Err(DomainError::Forbidden(format!(
                "you may see device {imei} but not change it: that needs the {needed} role on its group (you are {r})"
            ))),
            Some(_) => Ok(device),
        }
    }

    // ---- live notifications ----

    /// Subscribes the caller to notifications of `device_ids`. The list is refused as a whole if
    /// any id is malformed, unknown or not the caller's; the error names every refused id.
    pub async fn subscribe_devices(
        &self,
        caller: Option<&Caller>,
        device_ids: &[String],
    ) -> Result<BusStream, DomainError> {
        let caller = require(caller)?;
        if device_ids.is_empty() {
            return Err(DomainError::invalid(
                "deviceIds",
                "deviceIds must name at least one device",
            ));
        }
        if device_ids.len() > MAX_DEVICES_PER_SUBSCRIPTION {
            return Err(DomainError::invalid(
                "deviceIds",
                format!("deviceIds may name at most {MAX_DEVICES_PER_SUBSCRIPTION} devices"),
            ));
        }
        let access = self.access_of(caller.account).await?;
        let mut devices = Vec::with_capacity(device_ids.len());
        let mut refused = Vec::new();
        for id in device_ids {
            let visible = match Imei::parse(id) {
                Ok(imei) => match self.store.device_by_imei(&imei).await? {
                    Some(d) if access.can(d.group, Role::Viewer) => Some(imei),
                    _ => None,
                },
                Err(_) => None,
            };
            match visible {
                Some(imei) => devices.push(imei),
                None => refused.push(id.as_str()),
            }
        }
        if !refused.is_empty() {
            return Err(DomainError::Forbidden(format!(
                "you may not subscribe to device(s) {}: unknown, or not yours",
                refused.join(", ")
            )));
        }
        devices.sort();
        devices.dedup();
        Ok(withdraw_on_owner_change(
            self.bus.subscribe(&devices),
            self.clone(),
            caller.account,
            access.visible_set(),
        ))
    }
}

/// How long a live subscription trusts the rights it computed when nothing in this process
/// changed any: changes made by another process (the admin CLI) take effect within this.
pub const RIGHTS_RECHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// Re-checks access on every delivery: a notification carries the group its device was in
/// when stored, and the subscriber must still see that group. The visible groups are
/// recomputed (two store reads) when a rights-changing operation ran in this process since the
/// last computation (`Ekko::rights_changed`), or after [`RIGHTS_RECHECK`]; otherwise the check
/// is a set lookup. A notification the caller may no longer see becomes `AccessWithdrawn`, and
/// the stream ends there, at once (the client is told `complete` without waiting for the
/// device's next record).
fn withdraw_on_owner_change(
    stream: BusStream,
    ekko: Ekko,
    account: AccountId,
    visible: std::collections::HashSet<GroupId>,
) -> BusStream {
    use futures::StreamExt;
    struct Rights {
        visible: std::collections::HashSet<GroupId>,
        epoch: u64,
        at: std::time::Instant,
    }
    let rights = Rights {
        visible,
        epoch: ekko.rights_epoch(),
        at: std::time::Instant::now(),
    };
    Box::pin(futures::stream::unfold(
        Some((stream, rights)),
        move |state| {
            let ekko = ekko.clone();
            async move {
                let (mut stream, mut rights) = state?;
                let item = match stream.next().await? {
                    BusItem::Notification(p) => {
                        let epoch = ekko.rights_epoch();
                        if epoch != rights.epoch || rights.at.elapsed() > RIGHTS_RECHECK {
                            // On a storage failure, keep the rights we had and retry later.
                            if let Ok(access) = ekko.access_of(account).await {
                                rights = Rights {
                                    visible: access.visible_set(),
                                    epoch,
                                    at: std::time::Instant::now(),
                                };
                            }
                        }
                        if !rights.visible.contains(&p.group) {
                            return Some((BusItem::AccessWithdrawn(p.device().clone()), None));
                        }
                        BusItem::Notification(p)
                    }
                    other => other,
                };
                Some((item, Some((stream, rights))))
            }
        },
    ))
}

fn check_name(field: &str, value: &str) -> Result<String, DomainError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(DomainError::invalid(
            field,
            format!("{field} must not be empty"),
        ));
    }
    if trimmed.chars().count() > MAX_NAME_CHARS {
        return Err(DomainError::invalid(
            field,
            format!("{field} may be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    Ok(trimmed.to_owned())
}

fn check_payload(payload: &[u8]) -> Result<(), DomainError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(DomainError::invalid(
            "payload",
            format!("a payload may be at most {MAX_PAYLOAD_BYTES} bytes"),
        ));
    }
    Ok(())
}
