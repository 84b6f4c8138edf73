//! The fleet graph over GraphQL: groups, vehicles, installations, roles and the accounts list,
//! their queries and the mutations that change them. Names are snake_case as in the v2
//! examples; ids are strings on output (inputs may be JSON numbers too). Resolvers only
//! translate: every decision (visibility, roles, validation) is the domain's.

use async_graphql::{Context, ID, Object, Result, SimpleObject};
use ekko_core::fleet::{Group, Installation, RoleGrant, Vehicle};
use ekko_core::paging::Page;
use ekko_core::service::fleet::{InviteOutcome, ListArgs, VehicleArgs};
use ekko_core::service::history::PageArgs;
use ekko_core::time::rfc3339;

use crate::devices::{DeviceObject, DevicePaged, paged_complexity};
use crate::errors::to_graphql;
use crate::schema::{AccountObject, caller, ekko};

fn page_args(page_size: Option<i64>, page_id: &Option<ID>) -> PageArgs<'_> {
    PageArgs {
        page_size,
        page_id: page_id.as_ref().map(|p| p.as_str()),
    }
}

fn count(n: Option<u64>) -> Option<i64> {
    n.map(|n| i64::try_from(n).unwrap_or(i64::MAX))
}

// ---------------------------------------------------------------- Group

/// A group: holds devices, vehicles, the roles accounts have on it, and other groups. Rights
/// given on a group apply to every group below it.
pub struct GroupObject(pub Group);

#[Object(name = "Group")]
impl GroupObject {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }
    #[graphql(name = "organization_id")]
    async fn organization_id(&self) -> ID {
        ID(self.0.organization.to_string())
    }
    /// The parent group's id; null for an organization's root group.
    #[graphql(name = "parent_id")]
    async fn parent_id(&self) -> Option<ID> {
        self.0.parent.map(|p| ID(p.to_string()))
    }
    /// The parent group, when you can see it.
    async fn parent(&self, ctx: &Context<'_>) -> Result<Option<GroupObject>> {
        let Some(p) = self.0.parent else {
            return Ok(None);
        };
        match ekko(ctx).group(caller(ctx), &p.to_string()).await {
            Ok(g) => Ok(Some(GroupObject(g))),
            Err(ekko_core::DomainError::NotFound(_)) => Ok(None),
            Err(e) => Err(to_graphql(e)),
        }
    }
    /// Your role here (held on this group or inherited from above): viewer, manager or admin.
    #[graphql(name = "my_role")]
    async fn my_role(&self, ctx: &Context<'_>) -> Result<String> {
        ekko(ctx)
            .role_on_group(caller(ctx), self.0.id)
            .await
            .map(|r| r.as_str().to_owned())
            .map_err(to_graphql)
    }
    /// The groups right below this one. `page_size`: default 50, at most 500.
    #[graphql(complexity = "paged_complexity(page_size, 50, 500, 10, child_complexity)")]
    async fn children(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "page_size")] page_size: Option<i64>,
        #[graphql(name = "page_id")] page_id: Option<ID>,
    ) -> Result<GroupPaged> {
        ekko(ctx)
            .subgroups(caller(ctx), self.0.id, page_args(page_size, &page_id))
            .await
            .map(GroupPaged::from)
            .map_err(to_graphql)
    }
    /// Devices in this group and the groups below it, by IMEI. `text` matches IMEI, name or
    /// serial; `status` is active or suspended. `page_size`: default 50, at most 500.
    #[graphql(complexity = "paged_complexity(page_size, 50, 500, 10, child_complexity)")]
    async fn devices(
        &self,
        ctx: &Context<'_>,
        text: Option<String>,
        status: Option<String>,
        #[graphql(name = "page_size")] page_size: Option<i64>,
        #[graphql(name = "page_id")] page_id: Option<ID>,
    ) -> Result<DevicePaged> {
        let group = self.0.id.to_string();
        ekko(ctx)
            .devices(
                caller(ctx),
                ListArgs {
                    group_id: Some(&group),
                    text: text.as_deref(),
                    status: status.as_deref(),
                },
                page_args(page_size, &page_id),
            )
            .await
            .map(DevicePaged::from)
            .map_err(to_graphql)
    }
    /// Vehicles in this group and the groups below it. `page_size`: default 50, at most 500.
    #[graphql(complexity = "paged_complexity(page_size, 50, 500, 10, child_complexity)")]
    async fn vehicles(
        &self,
        ctx: &Context<'_>,
        text: Option<String>,
        #[graphql(name = "page_size")] page_size: Option<i64>,
        #[graphql(name = "page_id")] page_id: Option<ID>,
    ) -> Result<VehiclePaged> {
        let group = self.0.id.to_string();
        ekko(ctx)
            .vehicles(
                caller(ctx),
                ListArgs {
                    group_id: Some(&group),
                    text: text.as_deref(),
                    status: None,
                },
                page_args(page_size, &page_id),
            )
            .await
            .map(VehiclePaged::from)
            .map_err(to_graphql)
    }
    /// The roles held directly on this group.
    async fn roles(&self, ctx: &Context<'_>) -> Result<Vec<AccountRoleObject>> {
        let roles = ekko(ctx)
            .group_roles(caller(ctx), self.0.id)
            .await
            .map_err(to_graphql)?;
        Ok(roles.into_iter().map(AccountRoleObject).collect())
    }
    #[graphql(name = "created_at")]
    async fn created_at(&self) -> String {
        rfc3339(&self.0.created_at)
    }
    #[graphql(name = "updated_at")]
    async fn updated_at(&self) -> String {
        rfc3339(&self.0.updated_at)
    }
}

/// A role an account holds on a group.
pub struct AccountRoleObject(pub RoleGrant);

#[Object(name = "AccountRole")]
impl AccountRoleObject {
    /// viewer, manager or admin.
    async fn role(&self) -> &str {
        self.0.role.as_str()
    }
    #[graphql(name = "group_id")]
    async fn group_id(&self) -> ID {
        ID(self.0.group.to_string())
    }
    #[graphql(name = "account_id")]
    async fn account_id(&self) -> ID {
        ID(self.0.account.to_string())
    }
    async fn group(&self, ctx: &Context<'_>) -> Result<GroupObject> {
        ekko(ctx)
            .group(caller(ctx), &self.0.group.to_string())
            .await
            .map(GroupObject)
            .map_err(to_graphql)
    }
    async fn account(&self, ctx: &Context<'_>) -> Result<AccountObject> {
        ekko(ctx)
            .account(caller(ctx), Some(&self.0.account.to_string()))
            .await
            .map(AccountObject)
            .map_err(to_graphql)
    }
}

// ---------------------------------------------------------------- Vehicle

/// A vehicle. Descriptive fields are optional.
pub struct VehicleObject(pub Vehicle);

#[Object(name = "Vehicle")]
impl VehicleObject {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> Option<&str> {
        self.0.details.name.as_deref()
    }
    /// ISO 3779 vehicle identification number (17 characters, upper-case).
    async fn vin(&self) -> Option<&str> {
        self.0.details.vin.as_deref()
    }
    async fn plate(&self) -> Option<&str> {
        self.0.details.plate.as_deref()
    }
    async fn make(&self) -> Option<&str> {
        self.0.details.make.as_deref()
    }
    async fn model(&self) -> Option<&str> {
        self.0.details.model.as_deref()
    }
    /// Model year.
    async fn year(&self) -> Option<i32> {
        self.0.details.year
    }
    /// petrol, diesel, electric, hybrid, plugin_hybrid, lpg, cng, hydrogen or other.
    #[graphql(name = "fuel_type")]
    async fn fuel_type(&self) -> Option<&str> {
        self.0.details.fuel_type.map(|f| f.as_str())
    }
    #[graphql(name = "group_id")]
    async fn group_id(&self) -> ID {
        ID(self.0.group.to_string())
    }
    async fn group(&self, ctx: &Context<'_>) -> Result<GroupObject> {
        ekko(ctx)
            .group(caller(ctx), &self.0.group.to_string())
            .await
            .map(GroupObject)
            .map_err(to_graphql)
    }
    #[graphql(name = "organization_id")]
    async fn organization_id(&self) -> ID {
        ID(self.0.organization.to_string())
    }
    /// The device installed in the vehicle now (null when none, or one you cannot see).
    async fn device(&self, ctx: &Context<'_>) -> Result<Option<DeviceObject>> {
        let history = ekko(ctx)
            .vehicle_installations(caller(ctx), self.0.id)
            .await
            .map_err(to_graphql)?;
        let Some(open) = history.into_iter().find(|i| i.removed_at.is_none()) else {
            return Ok(None);
        };
        ekko(ctx)
            .device(caller(ctx), open.imei.as_str())
            .await
            .map(|d| Some(DeviceObject(d)))
            .map_err(to_graphql)
    }
    /// Every device installed in the vehicle, newest first.
    async fn installations(&self, ctx: &Context<'_>) -> Result<Vec<InstallationObject>> {
        let history = ekko(ctx)
            .vehicle_installations(caller(ctx), self.0.id)
            .await
            .map_err(to_graphql)?;
        Ok(history.into_iter().map(InstallationObject).collect())
    }
    #[graphql(name = "created_at")]
    async fn created_at(&self) -> String {
        rfc3339(&self.0.created_at)
    }
    #[graphql(name = "updated_at")]
    async fn updated_at(&self) -> String {
        rfc3339(&self.0.updated_at)
    }
}

/// A device installed in a vehicle from `installed_at` until `removed_at` (null: still there).
pub struct InstallationObject(pub Installation);

#[Object(name = "Installation")]
impl InstallationObject {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    #[graphql(name = "device_id")]
    async fn device_id(&self) -> ID {
        ID(self.0.imei.to_string())
    }
    #[graphql(name = "vehicle_id")]
    async fn vehicle_id(&self) -> ID {
        ID(self.0.vehicle.to_string())
    }
    async fn device(&self, ctx: &Context<'_>) -> Result<DeviceObject> {
        ekko(ctx)
            .device(caller(ctx), self.0.imei.as_str())
            .await
            .map(DeviceObject)
            .map_err(to_graphql)
    }
    async fn vehicle(&self, ctx: &Context<'_>) -> Result<VehicleObject> {
        ekko(ctx)
            .vehicle(caller(ctx), &self.0.vehicle.to_string())
            .await
            .map(VehicleObject)
            .map_err(to_graphql)
    }
    #[graphql(name = "installed_at")]
    async fn installed_at(&self) -> String {
        rfc3339(&self.0.installed_at)
    }
    #[graphql(name = "removed_at")]
    async fn removed_at(&self) -> Option<String> {
        self.0.removed_at.as_ref().map(rfc3339)
    }
}

// ---------------------------------------------------------------- pages

/// A page of groups.
#[derive(SimpleObject)]
#[graphql(name = "GroupPaged")]
pub struct GroupPaged {
    count: Option<i64>,
    next: Option<ID>,
    list: Vec<GroupObject>,
}

impl From<Page<Group>> for GroupPaged {
    fn from(p: Page<Group>) -> Self {
        GroupPaged {
            count: count(p.count),
            next: p.next.map(ID),
            list: p.list.into_iter().map(GroupObject).collect(),
        }
    }
}

/// A page of vehicles.
#[derive(SimpleObject)]
#[graphql(name = "VehiclePaged")]
pub struct VehiclePaged {
    count: Option<i64>,
    next: Option<ID>,
    list: Vec<VehicleObject>,
}

impl From<Page<Vehicle>> for VehiclePaged {
    fn from(p: Page<Vehicle>) -> Self {
        VehiclePaged {
            count: count(p.count),
            next: p.next.map(ID),
            list: p.list.into_iter().map(VehicleObject).collect(),
        }
    }
}

/// A page of accounts.
#[derive(SimpleObject)]
#[graphql(name = "AccountPaged")]
pub struct AccountPaged {
    count: Option<i64>,
    next: Option<ID>,
    list: Vec<AccountObject>,
}

impl From<Page<ekko_core::account::Account>> for AccountPaged {
    fn from(p: Page<ekko_core::account::Account>) -> Self {
        AccountPaged {
            count: count(p.count),
            next: p.next.map(ID),
            list: p.list.into_iter().map(AccountObject).collect(),
        }
    }
}

/// What `group_invite` did.
#[derive(SimpleObject)]
#[graphql(name = "Invitation")]
pub struct InvitationObject {
    /// `added`: the account existed and holds the role now; `pending`: no account has this
    /// email yet: pass `code` to the invitee, who signs up and calls `invitation_accept`.
    status: String,
    /// The one-time code of a pending invitation (shown only here; Ekko keeps its hash).
    code: Option<String>,
    email: String,
    role: String,
    #[graphql(name = "group_id")]
    group_id: ID,
    account: Option<AccountObject>,
}

// ---------------------------------------------------------------- queries

#[derive(Default)]
pub struct FleetQuery;

#[Object]
impl FleetQuery {
    /// Accounts holding a role on a group you can see (`group_id`: that group and below).
    /// `text` matches email or full name. `page_size`: default 50, at most 500.
    #[graphql(complexity = "paged_complexity(page_size, 50, 500, 10, child_complexity)")]
    async fn accounts(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "group_id")] group_id: Option<ID>,
        text: Option<String>,
        #[graphql(name = "page_size")] page_size: Option<i64>,
        #[graphql(name = "page_id")] page_id: Option<ID>,
    ) -> Result<AccountPaged> {
        ekko(ctx)
            .accounts(
                caller(ctx),
                ListArgs {
                    group_id: group_id.as_ref().map(|g| g.as_str()),
                    text: text.as_deref(),
                    status: None,
                },
                page_args(page_size, &page_id),
            )
            .await
            .map(AccountPaged::from)
            .map_err(to_graphql)
    }

    /// A group you can see (`NOT_FOUND` otherwise).
    async fn group(&self, ctx: &Context<'_>, id: ID) -> Result<GroupObject> {
        ekko(ctx)
            .group(caller(ctx), &id)
            .await
            .map(GroupObject)
            .map_err(to_graphql)
    }

    /// The groups you can see, by id (`group_id`: that group and below; `text` matches the
    /// name). `page_size`: default 50, at most 500.
    #[graphql(complexity = "paged_complexity(page_size, 50, 500, 10, child_complexity)")]
    async fn groups(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "group_id")] group_id: Option<ID>,
        text: Option<String>,
        #[graphql(name = "page_size")] page_size: Option<i64>,
        #[graphql(name = "page_id")] page_id: Option<ID>,
    ) -> Result<GroupPaged> {
        ekko(ctx)
            .groups(
                caller(ctx),
                ListArgs {
                    group_id: group_id.as_ref().map(|g| g.as_str()),
                    text: text.as_deref(),
                    status: None,
                },
                page_args(page_size, &page_id),
            )
            .await
            .map(GroupPaged::from)
            .map_err(to_graphql)
    }

    /// The devices you can see, by IMEI (`group_id`: that group and below; `text` matches IMEI,
    /// name or serial; `status`: active or suspended). `page_size`: default 50, at most 500.
    #[graphql(complexity = "paged_complexity(page_size, 50, 500, 10, child_complexity)")]
    async fn devices(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "group_id")] group_id: Option<ID>,
        text: Option<String>,
        status: Option<String>,
        #[graphql(name = "page_size")] page_size: Option<i64>,
        #[graphql(name = "page_id")] page_id: Option<ID>,
    ) -> Result<DevicePaged> {
        ekko(ctx)
            .devices(
                caller(ctx),
                ListArgs {
                    group_id: group_id.as_ref().map(|g| g.as_str()),
                    text: text.as_deref(),
                    status: status.as_deref(),
                },
                page_args(page_size, &page_id),
            )
            .await
            .map(DevicePaged::from)
            .map_err(to_graphql)
    }

    /// A vehicle you can see (`NOT_FOUND` otherwise).
    async fn vehicle(&self, ctx: &Context<'_>, id: ID) -> Result<VehicleObject> {
        ekko(ctx)
            .vehicle(caller(ctx), &id)
            .await
            .map(VehicleObject)
            .map_err(to_graphql)
    }

    /// The vehicles you can see, by id (`group_id`: that group and below; `text` matches name,
    /// VIN, plate, make or model). `page_size`: default 50, at most 500.
    #[graphql(complexity = "paged_complexity(page_size, 50, 500, 10, child_complexity)")]
    async fn vehicles(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "group_id")] group_id: Option<ID>,
        text: Option<String>,
        #[graphql(name = "page_size")] page_size: Option<i64>,
        #[graphql(name = "page_id")] page_id: Option<ID>,
    ) -> Result<VehiclePaged> {
        ekko(ctx)
            .vehicles(
                caller(ctx),
                ListArgs {
                    group_id: group_id.as_ref().map(|g| g.as_str()),
                    text: text.as_deref(),
                    status: None,
                },
                page_args(page_size, &page_id),
            )
            .await
            .map(VehiclePaged::from)
            .map_err(to_graphql)
    }
}

// ---------------------------------------------------------------- mutations

#[derive(Default)]
pub struct FleetMutation;

#[Object]
impl FleetMutation {
    /// Creates a group under `parent_id` (admin there).
    #[graphql(name = "group_create")]
    async fn group_create(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "parent_id")] parent_id: ID,
        name: String,
        description: Option<String>,
    ) -> Result<GroupObject> {
        ekko(ctx)
            .create_group(caller(ctx), &parent_id, &name, description.as_deref())
            .await
            .map(GroupObject)
            .map_err(to_graphql)
    }

    /// Renames, re-describes (`""` clears) or moves a group (admin on it, and on the new parent).
    #[graphql(name = "group_update")]
    async fn group_update(
        &self,
        ctx: &Context<'_>,
        id: ID,
        name: Option<String>,
        description: Option<String>,
        #[graphql(name = "parent_id")] parent_id: Option<ID>,
    ) -> Result<GroupObject> {
        ekko(ctx)
            .update_group(
                caller(ctx),
                &id,
                name.as_deref(),
                description.as_deref(),
                parent_id.as_ref().map(|g| g.as_str()),
            )
            .await
            .map(GroupObject)
            .map_err(to_graphql)
    }

    /// Deletes an empty group (admin on it). Returns its id.
    #[graphql(name = "group_delete")]
    async fn group_delete(&self, ctx: &Context<'_>, id: ID) -> Result<ID> {
        ekko(ctx)
            .delete_group(caller(ctx), &id)
            .await
            .map_err(to_graphql)?;
        Ok(id)
    }

    /// Gives `email` a role (viewer, manager or admin) on a group (admin there). An email
    /// without an account gets the role when it signs up.
    #[graphql(name = "group_invite")]
    async fn group_invite(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "group_id")] group_id: ID,
        email: String,
        role: String,
    ) -> Result<InvitationObject> {
        let outcome = ekko(ctx)
            .invite(caller(ctx), &group_id, &email, &role)
            .await
            .map_err(to_graphql)?;
        let role = ekko_core::fleet::Role::parse(&role)
            .map_err(to_graphql)?
            .as_str()
            .to_owned();
        Ok(match outcome {
            InviteOutcome::Added(a) => InvitationObject {
                status: "added".into(),
                email: a.email.clone(),
                role,
                group_id,
                account: Some(AccountObject(*a)),
                code: None,
            },
            InviteOutcome::Pending { invitation, code } => InvitationObject {
                status: "pending".into(),
                email: invitation.email,
                role,
                group_id,
                account: None,
                code: Some(code),
            },
        })
    }

    /// Takes the role a pending invitation holds, with the code `group_invite` returned
    /// (once; then the code is spent).
    #[graphql(name = "invitation_accept")]
    async fn invitation_accept(
        &self,
        ctx: &Context<'_>,
        code: String,
    ) -> Result<AccountRoleObject> {
        ekko(ctx)
            .accept_invitation(caller(ctx), &code)
            .await
            .map(AccountRoleObject)
            .map_err(to_graphql)
    }

    /// Takes an account's role on a group away (admin there). False when it had none.
    #[graphql(name = "role_revoke")]
    async fn role_revoke(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "group_id")] group_id: ID,
        #[graphql(name = "account_id")] account_id: ID,
    ) -> Result<bool> {
        ekko(ctx)
            .revoke_role(caller(ctx), &group_id, &account_id)
            .await
            .map_err(to_graphql)
    }

    /// Registers a device in a group (manager there).
    #[graphql(name = "device_create")]
    async fn device_create(
        &self,
        ctx: &Context<'_>,
        imei: String,
        #[graphql(name = "group_id")] group_id: ID,
        name: Option<String>,
        serial: Option<String>,
    ) -> Result<DeviceObject> {
        ekko(ctx)
            .add_device(
                caller(ctx),
                &imei,
                &group_id,
                name.as_deref(),
                serial.as_deref(),
            )
            .await
            .map(DeviceObject)
            .map_err(to_graphql)
    }

    /// Renames (`""` clears), suspends/reactivates (`status`) or moves a device (manager on its
    /// group, and on the new one). A suspended device's data is refused at ingestion.
    #[graphql(name = "device_update")]
    async fn device_update(
        &self,
        ctx: &Context<'_>,
        id: ID,
        name: Option<String>,
        serial: Option<String>,
        status: Option<String>,
        #[graphql(name = "group_id")] group_id: Option<ID>,
    ) -> Result<DeviceObject> {
        ekko(ctx)
            .update_device(
                caller(ctx),
                &id,
                name.as_deref(),
                serial.as_deref(),
                status.as_deref(),
                group_id.as_ref().map(|g| g.as_str()),
            )
            .await
            .map(DeviceObject)
            .map_err(to_graphql)
    }

    /// Deletes a device and all its data (manager on its group). Returns its id.
    #[graphql(name = "device_delete")]
    async fn device_delete(&self, ctx: &Context<'_>, id: ID) -> Result<ID> {
        ekko(ctx)
            .remove_device(caller(ctx), &id)
            .await
            .map_err(to_graphql)?;
        Ok(id)
    }

    /// Creates a vehicle in a group (manager there).
    #[graphql(name = "vehicle_create")]
    #[allow(clippy::too_many_arguments)]
    async fn vehicle_create(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "group_id")] group_id: ID,
        name: Option<String>,
        vin: Option<String>,
        plate: Option<String>,
        make: Option<String>,
        model: Option<String>,
        year: Option<i32>,
        #[graphql(name = "fuel_type")] fuel_type: Option<String>,
    ) -> Result<VehicleObject> {
        let args = VehicleArgs {
            name: name.as_deref(),
            vin: vin.as_deref(),
            plate: plate.as_deref(),
            make: make.as_deref(),
            model: model.as_deref(),
            year,
            fuel_type: fuel_type.as_deref(),
        };
        ekko(ctx)
            .create_vehicle(caller(ctx), &group_id, &args)
            .await
            .map(VehicleObject)
            .map_err(to_graphql)
    }

    /// Changes a vehicle (`""` clears a field) or moves it (manager on its group, and on the
    /// new one).
    #[graphql(name = "vehicle_update")]
    #[allow(clippy::too_many_arguments)]
    async fn vehicle_update(
        &self,
        ctx: &Context<'_>,
        id: ID,
        #[graphql(name = "group_id")] group_id: Option<ID>,
        name: Option<String>,
        vin: Option<String>,
        plate: Option<String>,
        make: Option<String>,
        model: Option<String>,
        year: Option<i32>,
        #[graphql(name = "fuel_type")] fuel_type: Option<String>,
    ) -> Result<VehicleObject> {
        let args = VehicleArgs {
            name: name.as_deref(),
            vin: vin.as_deref(),
            plate: plate.as_deref(),
            make: make.as_deref(),
            model: model.as_deref(),
            year,
            fuel_type: fuel_type.as_deref(),
        };
        ekko(ctx)
            .update_vehicle(
                caller(ctx),
                &id,
                group_id.as_ref().map(|g| g.as_str()),
                &args,
            )
            .await
            .map(VehicleObject)
            .map_err(to_graphql)
    }

    /// Deletes a vehicle and its installation history (manager on its group). Returns its id.
    #[graphql(name = "vehicle_delete")]
    async fn vehicle_delete(&self, ctx: &Context<'_>, id: ID) -> Result<ID> {
        ekko(ctx)
            .delete_vehicle(caller(ctx), &id)
            .await
            .map_err(to_graphql)?;
        Ok(id)
    }

    /// Installs a device in a vehicle (manager on both). It leaves its previous vehicle, and
    /// the vehicle's previous device leaves; the history keeps both.
    #[graphql(name = "device_attach")]
    async fn device_attach(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "device_id")] device_id: ID,
        #[graphql(name = "vehicle_id")] vehicle_id: ID,
    ) -> Result<InstallationObject> {
        ekko(ctx)
            .attach_device(caller(ctx), &device_id, &vehicle_id)
            .await
            .map(InstallationObject)
            .map_err(to_graphql)
    }

    /// Removes a device from its vehicle (manager on the device's group).
    #[graphql(name = "device_detach")]
    async fn device_detach(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "device_id")] device_id: ID,
    ) -> Result<InstallationObject> {
        ekko(ctx)
            .detach_device(caller(ctx), &device_id)
            .await
            .map(InstallationObject)
            .map_err(to_graphql)
    }
}
