//! Types and resolvers of the ekko v2 schema. Names follow Munic: snake_case as in the v2
//! examples (`account(id: "me") { full_name }`, `account_update(full_name:)`), camelCase where
//! getting-started.txt uses it (`deviceNotifications(deviceIds:)`, `deviceId`), and the camelCase
//! aliases of the `master` reference on `Account`.

use async_graphql::{
    Context, ID, Interface, Json, Object, Result, SimpleObject, Subscription as SubscriptionAttr,
};
use ekko_core::account::Account;
use ekko_core::fields::Field;
use ekko_core::notification::{DeviceMessage, DeviceNotification, Poke as DomainPoke};
use ekko_core::ports::BusItem;
use ekko_core::time::{Timestamp, rfc3339};
use ekko_core::track::Track as DomainTrack;
use ekko_core::{Caller, Ekko};
use futures::{Stream, StreamExt};

use crate::errors::to_graphql;
use crate::{RequestAuth, SubscriptionReady};

pub(crate) fn caller<'a>(ctx: &'a Context<'_>) -> Option<&'a Caller> {
    ctx.data_opt::<RequestAuth>().and_then(|a| a.0.as_ref())
}

pub(crate) fn ekko<'a>(ctx: &'a Context<'_>) -> &'a Ekko {
    ctx.data_unchecked::<Ekko>()
}

// ---------------------------------------------------------------- Account

pub struct AccountObject(pub Account);

#[Object(name = "Account")]
impl AccountObject {
    /// The account's UUID (the `user.uid` of its access tokens).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn email(&self) -> &str {
        &self.0.email
    }
    #[graphql(name = "full_name")]
    async fn full_name(&self) -> &str {
        &self.0.full_name
    }
    /// Alias of `full_name` (the `master` schema's spelling).
    #[graphql(name = "fullName")]
    async fn full_name_camel(&self) -> &str {
        &self.0.full_name
    }
    /// RFC 3339 UTC.
    #[graphql(name = "created_at")]
    async fn created_at(&self) -> String {
        rfc3339(&self.0.created_at)
    }
    #[graphql(name = "createdAt")]
    async fn created_at_camel(&self) -> String {
        rfc3339(&self.0.created_at)
    }
    #[graphql(name = "updated_at")]
    async fn updated_at(&self) -> String {
        rfc3339(&self.0.updated_at)
    }
    #[graphql(name = "updatedAt")]
    async fn updated_at_camel(&self) -> String {
        rfc3339(&self.0.updated_at)
    }
    /// The account's home organization.
    #[graphql(name = "organization_id")]
    async fn organization_id(&self) -> ID {
        ID(self.0.organization.to_string())
    }
    /// Alias of `organization_id`.
    #[graphql(name = "organizationId")]
    async fn organization_id_camel(&self) -> ID {
        ID(self.0.organization.to_string())
    }
    #[graphql(name = "short_name")]
    async fn short_name(&self) -> Option<&str> {
        self.0.profile.short_name.as_deref()
    }
    /// Alias of `short_name`.
    #[graphql(name = "shortName")]
    async fn short_name_camel(&self) -> Option<&str> {
        self.0.profile.short_name.as_deref()
    }
    #[graphql(name = "company_name")]
    async fn company_name(&self) -> Option<&str> {
        self.0.profile.company_name.as_deref()
    }
    /// Alias of `company_name`.
    #[graphql(name = "companyName")]
    async fn company_name_camel(&self) -> Option<&str> {
        self.0.profile.company_name.as_deref()
    }
    /// ISO 3166-1 alpha-2.
    #[graphql(name = "country_code")]
    async fn country_code(&self) -> Option<&str> {
        self.0.profile.country_code.as_deref()
    }
    /// Alias of `country_code`.
    #[graphql(name = "countryCode")]
    async fn country_code_camel(&self) -> Option<&str> {
        self.0.profile.country_code.as_deref()
    }
    /// An IANA zone name.
    #[graphql(name = "time_zone")]
    async fn time_zone(&self) -> Option<&str> {
        self.0.profile.time_zone.as_deref()
    }
    /// Alias of `time_zone`.
    #[graphql(name = "timeZone")]
    async fn time_zone_camel(&self) -> Option<&str> {
        self.0.profile.time_zone.as_deref()
    }
    /// The last password sign-in (RFC 3339 UTC).
    #[graphql(name = "last_sign_in_at")]
    async fn last_sign_in_at(&self) -> Option<String> {
        self.0.last_sign_in_at.as_ref().map(rfc3339)
    }
    /// Alias of `last_sign_in_at`.
    #[graphql(name = "lastSignInAt")]
    async fn last_sign_in_at_camel(&self) -> Option<String> {
        self.0.last_sign_in_at.as_ref().map(rfc3339)
    }
    /// E.164.
    async fn phone(&self) -> Option<&str> {
        self.0.profile.phone.as_deref()
    }
    /// A BCP 47 language tag.
    async fn language(&self) -> Option<&str> {
        self.0.profile.language.as_deref()
    }
    /// When the email was confirmed: Ekko does not confirm emails, so always null.
    #[graphql(name = "confirmed_at")]
    async fn confirmed_at(&self) -> Option<String> {
        None
    }
    /// Alias of `confirmed_at`.
    #[graphql(name = "confirmedAt")]
    async fn confirmed_at_camel(&self) -> Option<String> {
        None
    }
    /// The roles the account holds (on your own account: all; on another: those on groups
    /// you can see).
    async fn roles(&self, ctx: &Context<'_>) -> Result<Vec<crate::fleet::AccountRoleObject>> {
        let roles = ekko(ctx)
            .account_roles(caller(ctx), self.0.id)
            .await
            .map_err(to_graphql)?;
        Ok(roles
            .into_iter()
            .map(crate::fleet::AccountRoleObject)
            .collect())
    }
    /// The groups you can see (your own account only). `page_size`: default 50, at most 500.
    #[graphql(
        complexity = "crate::devices::paged_complexity(page_size, 50, 500, 10, child_complexity)"
    )]
    async fn groups(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "page_size")] page_size: Option<i64>,
        #[graphql(name = "page_id")] page_id: Option<ID>,
    ) -> Result<crate::fleet::GroupPaged> {
        self.only_own(ctx, "groups")?;
        ekko(ctx)
            .groups(
                caller(ctx),
                Default::default(),
                ekko_core::service::history::PageArgs {
                    page_size,
                    page_id: page_id.as_ref().map(|p| p.as_str()),
                },
            )
            .await
            .map(crate::fleet::GroupPaged::from)
            .map_err(to_graphql)
    }
    /// The devices you can see (your own account only). `page_size`: default 50, at most 500.
    #[graphql(
        complexity = "crate::devices::paged_complexity(page_size, 50, 500, 10, child_complexity)"
    )]
    async fn devices(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "page_size")] page_size: Option<i64>,
        #[graphql(name = "page_id")] page_id: Option<ID>,
    ) -> Result<crate::devices::DevicePaged> {
        self.only_own(ctx, "devices")?;
        ekko(ctx)
            .devices(
                caller(ctx),
                Default::default(),
                ekko_core::service::history::PageArgs {
                    page_size,
                    page_id: page_id.as_ref().map(|p| p.as_str()),
                },
            )
            .await
            .map(crate::devices::DevicePaged::from)
            .map_err(to_graphql)
    }
}

impl AccountObject {
    /// `groups` and `devices` list what the *caller* can see, so they answer on the caller's
    /// own account only.
    fn only_own(&self, ctx: &Context<'_>, field: &str) -> Result<()> {
        match caller(ctx) {
            Some(c) if c.account == self.0.id => Ok(()),
            _ => Err(to_graphql(ekko_core::DomainError::Forbidden(format!(
                "Account.{field} is available on your own account only; use the root query {field}(group_id:) instead"
            )))),
        }
    }
}

// ---------------------------------------------------------------- Tracks

/// A position with the time it was recorded.
#[derive(SimpleObject, Clone)]
#[graphql(name = "Coordinates")]
pub struct CoordinatesObject {
    /// Latitude, WGS-84 degrees.
    pub(crate) lat: f64,
    /// Longitude, WGS-84 degrees.
    pub(crate) lng: f64,
    /// When the device recorded this position (RFC 3339 UTC, milliseconds).
    pub(crate) time: String,
}

/// One named value of a track, in Munic units (see the field table in the README).
#[derive(SimpleObject, Clone)]
#[graphql(name = "TrackField")]
pub struct TrackFieldObject {
    /// Munic field name, e.g. GPS_SPEED.
    pub(crate) name: String,
    /// The value: an integer, float, boolean or string.
    pub(crate) value: Json<serde_json::Value>,
    /// The record's position, or null when the device had no fix.
    pub(crate) coordinates: Option<CoordinatesObject>,
    /// The unit `value` is in, for known numeric fields (e.g. `1/1000 knot` for GPS_SPEED).
    pub(crate) unit: Option<&'static str>,
    /// `value` in everyday units (GPS_SPEED in km/h, GPS_DIR in degrees, ODO_FULL_METER in
    /// km, …), for known numeric fields; null otherwise.
    pub(crate) decoded: Option<f64>,
    /// The unit of `decoded`.
    #[graphql(name = "decoded_unit")]
    pub(crate) decoded_unit: Option<&'static str>,
}

impl TrackFieldObject {
    pub(crate) fn new(
        name: &str,
        value: &ekko_core::fields::FieldValue,
        coordinates: Option<CoordinatesObject>,
    ) -> Self {
        let decoded = ekko_core::fields::decode(name, value);
        TrackFieldObject {
            name: name.to_owned(),
            value: Json(value.to_json()),
            coordinates,
            unit: ekko_core::fields::unit_of(name).map(|u| u.unit),
            decoded: decoded.map(|d| d.0),
            decoded_unit: decoded.map(|d| d.1),
        }
    }
}

/// What a device recorded at one instant.
#[derive(SimpleObject, Clone)]
#[graphql(name = "Track")]
pub struct TrackObject {
    /// The device's IMEI.
    #[graphql(name = "deviceId")]
    device_id: ID,
    /// The track's id.
    id: ID,
    /// When the device recorded it (RFC 3339 UTC).
    #[graphql(name = "recorded_at")]
    recorded_at: String,
    /// When Ekko received it (RFC 3339 UTC).
    #[graphql(name = "received_at")]
    received_at: String,
    coordinates: Option<CoordinatesObject>,
    fields: Vec<TrackFieldObject>,
}

fn coordinates(t: &DomainTrack, at: &Timestamp) -> Option<CoordinatesObject> {
    t.coordinates.map(|c| CoordinatesObject {
        lat: c.lat,
        lng: c.lng,
        time: rfc3339(at),
    })
}

impl From<&DomainTrack> for TrackObject {
    fn from(t: &DomainTrack) -> Self {
        let coords = coordinates(t, &t.recorded_at);
        TrackObject {
            device_id: ID(t.imei.to_string()),
            id: ID(t.id.to_string()),
            recorded_at: rfc3339(&t.recorded_at),
            received_at: rfc3339(&t.received_at),
            coordinates: coords.clone(),
            fields: t
                .fields
                .iter()
                .map(|f: &Field| TrackFieldObject::new(&f.name, &f.value, coords.clone()))
                .collect(),
        }
    }
}

/// A device's connection changed (CloudConnect "presence").
#[derive(SimpleObject, Clone)]
#[graphql(name = "Presence")]
pub struct PresenceObject {
    #[graphql(name = "deviceId")]
    device_id: ID,
    id: ID,
    /// `connect`, `disconnect`, `failed_connect` or `declare_asset`.
    #[graphql(name = "type")]
    kind: String,
    /// Free text (open list: accept values you do not know).
    reason: Option<String>,
    /// The device protocol (`osmand`, `teltonika`, ...), when known.
    protocol: Option<String>,
    /// RFC 3339 UTC.
    time: String,
}

/// A device ↔ cloud message (CloudConnect "message").
#[derive(SimpleObject, Clone)]
#[graphql(name = "Message")]
pub struct MessageObject {
    #[graphql(name = "deviceId")]
    device_id: ID,
    id: ID,
    /// The message this one answers (replies and acks).
    #[graphql(name = "parent_id")]
    parent_id: Option<ID>,
    channel: String,
    /// `message` or `ack`.
    #[graphql(name = "type")]
    kind: String,
    sender: String,
    recipient: String,
    /// The payload, base64.
    #[graphql(name = "b64_payload")]
    b64_payload: String,
    /// When the device recorded it (RFC 3339 UTC); null on acks.
    #[graphql(name = "recorded_at")]
    recorded_at: Option<String>,
    #[graphql(name = "received_at")]
    received_at: String,
}

/// A change notification from a service (CloudConnect "poke"): re-read the object it names.
#[derive(SimpleObject, Clone)]
#[graphql(name = "Poke")]
pub struct PokeObject {
    #[graphql(name = "deviceId")]
    device_id: ID,
    id: ID,
    sender: String,
    namespace: String,
    /// The payload, base64.
    #[graphql(name = "b64_payload")]
    b64_payload: String,
    #[graphql(name = "received_at")]
    received_at: String,
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Anything that happened to a device. Use `... on Track { }` (or Presence, Message, Poke) to
/// select a kind.
#[derive(Interface, Clone)]
#[graphql(name = "DeviceNotification", field(name = "device_id", ty = "&ID"))]
pub enum DeviceNotificationObject {
    Track(TrackObject),
    Presence(PresenceObject),
    Message(MessageObject),
    Poke(PokeObject),
}

impl From<&DeviceNotification> for DeviceNotificationObject {
    fn from(n: &DeviceNotification) -> Self {
        match n {
            DeviceNotification::Track(t) => DeviceNotificationObject::Track(t.into()),
            DeviceNotification::Presence(p) => DeviceNotificationObject::Presence(PresenceObject {
                device_id: ID(p.imei.to_string()),
                id: ID(p.id.to_string()),
                kind: p.kind.as_str().to_owned(),
                reason: p.reason.clone(),
                protocol: p.protocol.clone(),
                time: rfc3339(&p.time),
            }),
            DeviceNotification::Message(m) => DeviceNotificationObject::Message(m.into()),
            DeviceNotification::Poke(p) => DeviceNotificationObject::Poke(p.into()),
        }
    }
}

impl From<&DeviceMessage> for MessageObject {
    fn from(m: &DeviceMessage) -> Self {
        MessageObject {
            device_id: ID(m.imei.to_string()),
            id: ID(m.id.to_string()),
            parent_id: m.parent_id.map(|p| ID(p.to_string())),
            channel: m.channel.clone(),
            kind: m.kind.as_str().to_owned(),
            sender: m.sender.clone(),
            recipient: m.recipient.clone(),
            b64_payload: b64(&m.payload),
            recorded_at: m.recorded_at.as_ref().map(rfc3339),
            received_at: rfc3339(&m.received_at),
        }
    }
}

impl From<&DomainPoke> for PokeObject {
    fn from(p: &DomainPoke) -> Self {
        PokeObject {
            device_id: ID(p.imei.to_string()),
            id: ID(p.id.to_string()),
            sender: p.sender.clone(),
            namespace: p.namespace.clone(),
            b64_payload: b64(&p.payload),
            received_at: rfc3339(&p.received_at),
        }
    }
}

// ---------------------------------------------------------------- roots

#[derive(Default)]
pub struct CoreQuery;

#[Object]
impl CoreQuery {
    /// An account. Omit `id`, or pass `"me"`, for the caller's own account.
    async fn account(&self, ctx: &Context<'_>, id: Option<ID>) -> Result<AccountObject> {
        ekko(ctx)
            .account(caller(ctx), id.as_ref().map(|i| i.as_str()))
            .await
            .map(AccountObject)
            .map_err(to_graphql)
    }

    /// A device you can see, by IMEI (`NOT_FOUND` otherwise).
    async fn device(&self, ctx: &Context<'_>, id: ID) -> Result<crate::devices::DeviceObject> {
        ekko(ctx)
            .device(caller(ctx), id.as_str())
            .await
            .map(crate::devices::DeviceObject)
            .map_err(to_graphql)
    }
}

#[derive(Default)]
pub struct CoreMutation;

#[Object]
impl CoreMutation {
    /// Changes the caller's own account: any of its editable fields (`""` clears an optional
    /// one). The email changes only through Connect.
    #[graphql(name = "account_update")]
    #[allow(clippy::too_many_arguments)]
    async fn account_update(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "full_name")] full_name: Option<String>,
        #[graphql(name = "short_name")] short_name: Option<String>,
        phone: Option<String>,
        #[graphql(name = "company_name")] company_name: Option<String>,
        #[graphql(name = "country_code")] country_code: Option<String>,
        language: Option<String>,
        #[graphql(name = "time_zone")] time_zone: Option<String>,
    ) -> Result<AccountObject> {
        let changes = ekko_core::account::ProfileChanges {
            full_name: full_name.as_deref(),
            short_name: short_name.as_deref(),
            phone: phone.as_deref(),
            company_name: company_name.as_deref(),
            country_code: country_code.as_deref(),
            language: language.as_deref(),
            time_zone: time_zone.as_deref(),
        };
        ekko(ctx)
            .update_account(caller(ctx), &changes)
            .await
            .map(AccountObject)
            .map_err(to_graphql)
    }

    /// Sends a message to one of your devices on `channel` (payload in base64). Subscribers of
    /// the device receive it as a `Message` whose sender is your account id.
    #[graphql(name = "device_message_send")]
    async fn device_message_send(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "deviceId")] device_id: ID,
        channel: String,
        #[graphql(name = "b64_payload")] b64_payload: String,
    ) -> Result<MessageObject> {
        let payload = unb64(&b64_payload)?;
        let m = ekko(ctx)
            .send_message(caller(ctx), &device_id, &channel, payload)
            .await
            .map_err(to_graphql)?;
        Ok(MessageObject::from(&m))
    }

    /// Pokes one of your devices ("re-read `namespace`"; payload in base64). Subscribers of the
    /// device receive it as a `Poke` whose sender is your account id.
    #[graphql(name = "poke_send")]
    async fn poke_send(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "deviceId")] device_id: ID,
        namespace: String,
        #[graphql(name = "b64_payload")] b64_payload: String,
    ) -> Result<PokeObject> {
        let payload = unb64(&b64_payload)?;
        let p = ekko(ctx)
            .send_poke(caller(ctx), &device_id, &namespace, payload)
            .await
            .map_err(to_graphql)?;
        Ok(PokeObject::from(&p))
    }
}

fn unb64(s: &str) -> Result<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| {
            to_graphql(ekko_core::DomainError::invalid(
                "b64_payload",
                format!("b64_payload is not valid base64: {e}"),
            ))
        })
}

pub struct Subscription;

#[SubscriptionAttr]
impl Subscription {
    /// Live notifications of the given devices (IMEIs). Every id must be a device you can see;
    /// otherwise the whole subscription is refused with an error naming the others.
    #[graphql(name = "deviceNotifications")]
    async fn device_notifications(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "deviceIds")] device_ids: Vec<ID>,
    ) -> Result<impl Stream<Item = Result<DeviceNotificationObject>> + use<>> {
        let ids: Vec<String> = device_ids.into_iter().map(|i| i.0).collect();
        let kinds = crate::kinds::KindFilter::from_context(ctx);
        let stream = ekko(ctx)
            .subscribe_devices(caller(ctx), &ids)
            .await
            .map_err(to_graphql)?;
        if let Some(ready) = ctx.data_opt::<SubscriptionReady>() {
            ready.fire();
        }
        let stream = stream.filter(move |item| std::future::ready(kinds.accepts(item)));
        Ok(stream.map(|item| match item {
            BusItem::Notification(n) => Ok(DeviceNotificationObject::from(&n.notification)),
            BusItem::Overflowed => Err(crate::errors::slow_subscriber()),
            BusItem::AccessWithdrawn(imei) => Err(crate::errors::access_withdrawn(&imei)),
        }))
        // The stream ends right after `Overflowed` or `AccessWithdrawn`: the error is the last item.
    }
}
