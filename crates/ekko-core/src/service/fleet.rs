//! The fleet graph through the caller's rights: groups, devices, vehicles, installations,
//! accounts and roles. Every method loads the caller's [`Access`] and decides here; the store
//! only ever receives lists of groups the caller may see.
//!
//! Errors: a thing the caller cannot see is `NotFound` (exactly like one that does not
//! exist); a thing it sees but may not change is `Forbidden`, naming the role needed.

use super::history::PageArgs;
use super::{Ekko, require};
use crate::Caller;
use crate::account::{Account, normalize_email};
use crate::device::{Device, DeviceUpdate, NewDevice};
use crate::error::DomainError;
use crate::fleet::{
    Access, DeviceStatus, Group, GroupId, GroupNode, Installation, Invitation, ListFilter,
    MAX_DESCRIPTION_CHARS, MAX_GROUP_DEPTH, MAX_NAME_CHARS, Role, RoleGrant, Vehicle,
    VehicleDetails, VehicleId, check_optional, check_search, check_text, check_vin, check_year,
    subtree,
};
use crate::ids::{AccountId, Imei};
use crate::paging::{DEVICE_PAGES, FLEET_PAGES, Page, PageRequest, Position};
use crate::time::now_ms;

/// Filters of a list, as the caller sent them.
#[derive(Clone, Copy, Debug, Default)]
pub struct ListArgs<'a> {
    /// Only this group and the groups below it.
    pub group_id: Option<&'a str>,
    pub text: Option<&'a str>,
    /// Devices only: `active` or `suspended`.
    pub status: Option<&'a str>,
}

/// A vehicle's fields as the caller sent them (`vehicle_create`, `vehicle_update`); `""`
/// clears an optional field on update.
#[derive(Clone, Debug, Default)]
pub struct VehicleArgs<'a> {
    pub name: Option<&'a str>,
    pub vin: Option<&'a str>,
    pub plate: Option<&'a str>,
    pub make: Option<&'a str>,
    pub model: Option<&'a str>,
    pub year: Option<i32>,
    pub fuel_type: Option<&'a str>,
}

/// What `group_invite` did.
#[derive(Clone, Debug, PartialEq)]
pub enum InviteOutcome {
    /// The account exists: it holds the role now.
    Added(Box<Account>),
    /// No account has this email yet: the role waits for whoever presents `code` (shown this
    /// once; the inviter passes it on), signed in, with `invitation_accept`.
    Pending {
        invitation: Invitation,
        code: String,
    },
}

fn last_admin() -> DomainError {
    DomainError::invalid(
        "account_id",
        "this is the last admin of the organization's root group: grant admin to someone else first",
    )
}

/// The store's guard refused to leave a root group without an admin.
fn guard(e: crate::error::StoreError) -> DomainError {
    match e {
        crate::error::StoreError::Conflict(_) => last_admin(),
        other => other.into(),
    }
}

fn invitation_hash(code: &str) -> String {
    use sha2::{Digest, Sha256};
    to_hex(&Sha256::digest(code.trim().as_bytes()))
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The caller's rights and the trees they were computed from.
pub(crate) struct Scope {
    pub(crate) access: Access,
    nodes: Vec<GroupNode>,
}

fn not_found_group(id: GroupId) -> DomainError {
    DomainError::NotFound(format!("no group {id} visible to you"))
}

fn not_found_vehicle(id: VehicleId) -> DomainError {
    DomainError::NotFound(format!("no vehicle {id} visible to you"))
}

fn key_after(req: &PageRequest, list: &str) -> Result<Option<String>, DomainError> {
    match &req.after {
        None => Ok(None),
        Some(Position::Key(k)) => Ok(Some(k.clone())),
        Some(_) => Err(DomainError::invalid(
            "page_id",
            format!("page_id is not a cursor of {list}"),
        )),
    }
}

fn id_after(req: &PageRequest, list: &str) -> Result<Option<i64>, DomainError> {
    match &req.after {
        None => Ok(None),
        Some(Position::Id(i)) => Ok(Some(*i)),
        Some(_) => Err(DomainError::invalid(
            "page_id",
            format!("page_id is not a cursor of {list}"),
        )),
    }
}

fn forbidden(what: &str, needed: Role, had: Role) -> DomainError {
    DomainError::Forbidden(format!(
        "{what} needs the {needed} role on the group (you are {had} there)"
    ))
}

impl Ekko {
    /// For administrator commands (the CLI, with direct access to the data): act as the
    /// account with this email, with exactly its rights. Returns the caller and the root group
    /// of its organization (the default place for new groups, devices and vehicles).
    pub async fn act_as(&self, email: &str) -> Result<(Caller, GroupId), DomainError> {
        let account = self.account_by_email(email).await?;
        let root = self.root_group_of(&account).await?;
        Ok((
            Caller {
                account: account.id,
                scopes: vec![],
            },
            root,
        ))
    }

    pub(crate) async fn scope(&self, account: AccountId) -> Result<Scope, DomainError> {
        let grants = self.store.roles_of(account).await?;
        let mut orgs: Vec<_> = grants.iter().map(|g| g.organization).collect();
        orgs.sort();
        orgs.dedup();
        let nodes = if orgs.is_empty() {
            vec![]
        } else {
            self.store.group_nodes(&orgs).await?
        };
        Ok(Scope {
            access: Access::compute(&grants, &nodes),
            nodes,
        })
    }

    /// The caller's role on a group it can see; `NotFound` when it sees nothing there.
    fn role_in(scope: &Scope, group: GroupId) -> Result<Role, DomainError> {
        scope
            .access
            .role_on(group)
            .ok_or_else(|| not_found_group(group))
    }

    /// `needed` on `group`, or the right error.
    fn demand(scope: &Scope, group: GroupId, needed: Role, what: &str) -> Result<(), DomainError> {
        let had = Self::role_in(scope, group)?;
        if had < needed {
            return Err(forbidden(what, needed, had));
        }
        Ok(())
    }

    /// The groups a list covers: every visible one, or the subtree of `group_id`.
    fn list_groups(scope: &Scope, group_id: Option<&str>) -> Result<Vec<GroupId>, DomainError> {
        match group_id {
            None => Ok(scope.access.visible_groups()),
            Some(g) => {
                let g = GroupId::parse("group_id", g)?;
                Self::role_in(scope, g)?;
                // Roles flow down, so the subtree of a visible group is visible.
                Ok(subtree(&scope.nodes, g))
            }
        }
    }

    fn filter(scope: &Scope, args: &ListArgs<'_>) -> Result<ListFilter, DomainError> {
        Ok(ListFilter {
            groups: Self::list_groups(scope, args.group_id)?,
            text: check_search(args.text)?,
            status: args.status.map(DeviceStatus::parse).transpose()?,
        })
    }

    // ---------------------------------------------------------------- accounts

    pub(crate) async fn account_visible(
        &self,
        caller: &Caller,
        target: AccountId,
    ) -> Result<bool, DomainError> {
        let scope = self.scope(caller.account).await?;
        let theirs = self.store.roles_of(target).await?;
        Ok(theirs
            .iter()
            .any(|g| scope.access.role_on(g.group).is_some()))
    }

    /// Accounts holding a role on a group the caller can see (or on `group_id`'s subtree).
    pub async fn accounts(
        &self,
        caller: Option<&Caller>,
        args: ListArgs<'_>,
        page: PageArgs<'_>,
    ) -> Result<Page<Account>, DomainError> {
        let caller = require(caller)?;
        let scope = self.scope(caller.account).await?;
        let filter = Self::filter(&scope, &args)?;
        let req = PageRequest::parse("accounts", FLEET_PAGES, page.page_size, page.page_id)?;
        let after = key_after(&req, "accounts")?;
        let items = self
            .store
            .accounts_page(&filter, after.as_deref(), req.fetch())
            .await?;
        let count = self.store.count_accounts(&filter).await?;
        Ok(req.page("accounts", items, Some(count), |a| {
            Position::Key(a.id.to_string())
        }))
    }

    /// The roles `account` holds that the caller can see (its own: all of them).
    pub async fn account_roles(
        &self,
        caller: Option<&Caller>,
        account: AccountId,
    ) -> Result<Vec<RoleGrant>, DomainError> {
        let caller = require(caller)?;
        let grants = self.store.roles_of(account).await?;
        if account == caller.account {
            return Ok(grants);
        }
        let scope = self.scope(caller.account).await?;
        Ok(grants
            .into_iter()
            .filter(|g| scope.access.role_on(g.group).is_some())
            .collect())
    }

    /// The roles held directly on a group the caller can see.
    pub async fn group_roles(
        &self,
        caller: Option<&Caller>,
        group: GroupId,
    ) -> Result<Vec<RoleGrant>, DomainError> {
        let caller = require(caller)?;
        let scope = self.scope(caller.account).await?;
        Self::role_in(&scope, group)?;
        Ok(self.store.roles_on(&[group]).await?)
    }

    /// Gives `email` the `role` on a group (admin only). An existing account gets it at once;
    /// for an email without an account the role waits and is applied when it signs up.
    pub async fn invite(
        &self,
        caller: Option<&Caller>,
        group_id: &str,
        email: &str,
        role: &str,
    ) -> Result<InviteOutcome, DomainError> {
        let caller = require(caller)?;
        let group = GroupId::parse("group_id", group_id)?;
        let role = Role::parse(role)?;
        let email = normalize_email(email)?;
        let scope = self.scope(caller.account).await?;
        Self::demand(&scope, group, Role::Admin, "granting roles")?;
        let now = now_ms();
        match self.store.account_by_email(&email).await? {
            Some(account) => {
                self.store
                    .set_role(account.id, group, role, now)
                    .await
                    .map_err(guard)?;
                self.rights_changed();
                Ok(InviteOutcome::Added(Box::new(account)))
            }
            None => {
                let code = {
                    use rand::RngCore;
                    let mut bytes = [0u8; 24];
                    rand::rng().fill_bytes(&mut bytes);
                    format!("inv_{}", to_hex(&bytes))
                };
                let invitation = Invitation {
                    code_hash: invitation_hash(&code),
                    email,
                    group,
                    role,
                    invited_by: caller.account,
                    created_at: now,
                };
                self.store.insert_invitation(&invitation).await?;
                Ok(InviteOutcome::Pending { invitation, code })
            }
        }
    }

    /// The caller takes the role an invitation holds, by presenting its one-time code.
    pub async fn accept_invitation(
        &self,
        caller: Option<&Caller>,
        code: &str,
    ) -> Result<RoleGrant, DomainError> {
        let caller = require(caller)?;
        let bad = || {
            DomainError::NotFound(
                "no such invitation: the code is wrong, or it was already used".into(),
            )
        };
        if code.trim().len() > 100 {
            return Err(bad());
        }
        let invitation = self
            .store
            .take_invitation(&invitation_hash(code))
            .await?
            .ok_or_else(bad)?;
        let group = self.store.group(invitation.group).await?.ok_or_else(bad)?;
        self.store
            .set_role(caller.account, group.id, invitation.role, now_ms())
            .await
            .map_err(guard)?;
        Ok(RoleGrant {
            account: caller.account,
            group: group.id,
            organization: group.organization,
            role: invitation.role,
        })
    }

    /// Takes an account's role on a group away (admin only). An admin may not remove the last
    /// admin role of an organization's root group: the organization would have no admin.
    pub async fn revoke_role(
        &self,
        caller: Option<&Caller>,
        group_id: &str,
        account_id: &str,
    ) -> Result<bool, DomainError> {
        let caller = require(caller)?;
        let group = GroupId::parse("group_id", group_id)?;
        let account = AccountId::parse(account_id)?;
        let scope = self.scope(caller.account).await?;
        Self::demand(&scope, group, Role::Admin, "revoking roles")?;
        let g = self
            .store
            .group(group)
            .await?
            .ok_or_else(|| not_found_group(group))?;
        if g.parent.is_none() {
            let admins = self
                .store
                .roles_on(&[group])
                .await?
                .into_iter()
                .filter(|r| r.role == Role::Admin)
                .collect::<Vec<_>>();
            if admins.len() == 1 && admins[0].account == account {
                return Err(last_admin());
            }
        }
        let removed = self
            .store
            .remove_role(account, group)
            .await
            .map_err(guard)?;
        self.rights_changed();
        Ok(removed)
    }

    // ---------------------------------------------------------------- groups

    pub async fn group(&self, caller: Option<&Caller>, id: &str) -> Result<Group, DomainError> {
        let caller = require(caller)?;
        let id = GroupId::parse("id", id)?;
        let scope = self.scope(caller.account).await?;
        Self::role_in(&scope, id)?;
        self.store
            .group(id)
            .await?
            .ok_or_else(|| not_found_group(id))
    }

    /// The caller's role on a group it can see (what `Group.my_role` shows).
    pub async fn role_on_group(
        &self,
        caller: Option<&Caller>,
        group: GroupId,
    ) -> Result<Role, DomainError> {
        let caller = require(caller)?;
        Self::role_in(&self.scope(caller.account).await?, group)
    }

    /// Groups the caller can see (or `group_id`'s subtree), by id.
    pub async fn groups(
        &self,
        caller: Option<&Caller>,
        args: ListArgs<'_>,
        page: PageArgs<'_>,
    ) -> Result<Page<Group>, DomainError> {
        let caller = require(caller)?;
        let scope = self.scope(caller.account).await?;
        let filter = Self::filter(&scope, &args)?;
        let req = PageRequest::parse("groups", FLEET_PAGES, page.page_size, page.page_id)?;
        let items = self
            .store
            .groups_page(&filter, id_after(&req, "groups")?, req.fetch())
            .await?;
        let count = self.store.count_groups(&filter).await?;
        Ok(req.page("groups", items, Some(count), |g| Position::Id(g.id.0)))
    }

    /// The groups right below `parent` the caller can see.
    pub async fn subgroups(
        &self,
        caller: Option<&Caller>,
        parent: GroupId,
        page: PageArgs<'_>,
    ) -> Result<Page<Group>, DomainError> {
        let caller = require(caller)?;
        let scope = self.scope(caller.account).await?;
        Self::role_in(&scope, parent)?;
        let filter = ListFilter {
            groups: scope
                .nodes
                .iter()
                .filter(|n| n.parent == Some(parent))
                .map(|n| n.id)
                .collect(),
            ..Default::default()
        };
        let list = format!("subgroups of {parent}");
        let req = PageRequest::parse(&list, FLEET_PAGES, page.page_size, page.page_id)?;
        let items = self
            .store
            .groups_page(&filter, id_after(&req, &list)?, req.fetch())
            .await?;
        Ok(
            req.page(&list, items, Some(filter.groups.len() as u64), |g| {
                Position::Id(g.id.0)
            }),
        )
    }

    /// A group under `parent_id` (admin on the parent).
    pub async fn create_group(
        &self,
        caller: Option<&Caller>,
        parent_id: &str,
        name: &str,
        description: Option<&str>,
    ) -> Result<Group, DomainError> {
        let caller = require(caller)?;
        let parent = GroupId::parse("parent_id", parent_id)?;
        let name = check_text("name", name, MAX_NAME_CHARS)?;
        let description =
            check_optional("description", description, MAX_DESCRIPTION_CHARS)?.flatten();
        let scope = self.scope(caller.account).await?;
        Self::demand(&scope, parent, Role::Admin, "creating a group")?;
        if depth(&scope.nodes, parent) >= MAX_GROUP_DEPTH {
            return Err(DomainError::invalid(
                "parent_id",
                format!("groups nest at most {MAX_GROUP_DEPTH} levels deep"),
            ));
        }
        let p = self
            .store
            .group(parent)
            .await?
            .ok_or_else(|| not_found_group(parent))?;
        Ok(self
            .store
            .insert_group(
                p.organization,
                parent,
                &name,
                description.as_deref(),
                now_ms(),
            )
            .await?)
    }

    /// Renames, re-describes or moves a group (admin on it; moving: admin on the new parent
    /// too, in the same organization, never below itself). The root group cannot move.
    pub async fn update_group(
        &self,
        caller: Option<&Caller>,
        id: &str,
        name: Option<&str>,
        description: Option<&str>,
        parent_id: Option<&str>,
    ) -> Result<Group, DomainError> {
        let caller = require(caller)?;
        let id = GroupId::parse("id", id)?;
        let name = name
            .map(|n| check_text("name", n, MAX_NAME_CHARS))
            .transpose()?;
        let description = check_optional("description", description, MAX_DESCRIPTION_CHARS)?;
        let parent = parent_id
            .map(|p| GroupId::parse("parent_id", p))
            .transpose()?;
        let scope = self.scope(caller.account).await?;
        Self::demand(&scope, id, Role::Admin, "changing a group")?;
        let mut group = self
            .store
            .group(id)
            .await?
            .ok_or_else(|| not_found_group(id))?;
        if let Some(parent) = parent.filter(|p| Some(*p) != group.parent) {
            if group.parent.is_none() {
                return Err(DomainError::invalid(
                    "parent_id",
                    "the root group of an organization cannot be moved",
                ));
            }
            Self::demand(&scope, parent, Role::Admin, "moving a group there")?;
            let target = self
                .store
                .group(parent)
                .await?
                .ok_or_else(|| not_found_group(parent))?;
            if target.organization != group.organization {
                return Err(DomainError::invalid(
                    "parent_id",
                    "a group moves only within its organization",
                ));
            }
            if subtree(&scope.nodes, id).contains(&parent) {
                return Err(DomainError::invalid(
                    "parent_id",
                    "a group cannot move below itself",
                ));
            }
            let height = subtree_height(&scope.nodes, id);
            if depth(&scope.nodes, parent) + height > MAX_GROUP_DEPTH {
                return Err(DomainError::invalid(
                    "parent_id",
                    format!("groups nest at most {MAX_GROUP_DEPTH} levels deep"),
                ));
            }
            group.parent = Some(parent);
        }
        if name.is_none() && description.is_none() && parent.is_none() {
            return Err(DomainError::invalid(
                "group_update",
                "group_update needs at least one of name, description, parent_id",
            ));
        }
        if let Some(n) = name {
            group.name = n;
        }
        if let Some(d) = description {
            group.description = d;
        }
        group.updated_at = now_ms();
        self.store.update_group(&group).await.map_err(|e| match e {
            crate::error::StoreError::Conflict(_) => {
                DomainError::invalid("parent_id", "a group cannot move below itself")
            }
            other => other.into(),
        })?;
        self.rights_changed();
        Ok(group)
    }

    /// Deletes an empty group (admin on it): no subgroups, devices or vehicles left; the roles
    /// held on it go with it. The root group is never deleted.
    pub async fn delete_group(&self, caller: Option<&Caller>, id: &str) -> Result<(), DomainError> {
        let caller = require(caller)?;
        let id = GroupId::parse("id", id)?;
        let scope = self.scope(caller.account).await?;
        Self::demand(&scope, id, Role::Admin, "deleting a group")?;
        let group = self
            .store
            .group(id)
            .await?
            .ok_or_else(|| not_found_group(id))?;
        if group.parent.is_none() {
            return Err(DomainError::invalid(
                "id",
                "the root group of an organization cannot be deleted",
            ));
        }
        let c = self.store.group_contents(id).await?;
        if c.groups + c.devices + c.vehicles > 0 {
            return Err(DomainError::invalid(
                "id",
                format!(
                    "group {id} is not empty ({} subgroups, {} devices, {} vehicles): move or delete them first",
                    c.groups, c.devices, c.vehicles
                ),
            ));
        }
        self.store.delete_group(id).await?;
        self.rights_changed();
        Ok(())
    }

    // ---------------------------------------------------------------- devices

    /// Devices the caller can see, by IMEI, filtered.
    pub async fn devices(
        &self,
        caller: Option<&Caller>,
        args: ListArgs<'_>,
        page: PageArgs<'_>,
    ) -> Result<Page<Device>, DomainError> {
        let caller = require(caller)?;
        let scope = self.scope(caller.account).await?;
        let filter = Self::filter(&scope, &args)?;
        let req = PageRequest::parse("devices", DEVICE_PAGES, page.page_size, page.page_id)?;
        let after = key_after(&req, "devices")?;
        let items = self
            .store
            .devices_page(&filter, after.as_deref(), req.fetch())
            .await?;
        let count = self.store.count_devices(&filter).await?;
        Ok(req.page("devices", items, Some(count), |d| {
            Position::Key(d.imei.as_str().to_owned())
        }))
    }

    /// Registers a device in a group (manager there).
    pub async fn add_device(
        &self,
        caller: Option<&Caller>,
        imei: &str,
        group_id: &str,
        name: Option<&str>,
        serial: Option<&str>,
    ) -> Result<Device, DomainError> {
        let caller = require(caller)?;
        let imei = Imei::parse(imei)?;
        let group = GroupId::parse("group_id", group_id)?;
        let name = check_optional("name", name, MAX_NAME_CHARS)?.flatten();
        let serial = check_optional("serial", serial, MAX_NAME_CHARS)?.flatten();
        let scope = self.scope(caller.account).await?;
        Self::demand(&scope, group, Role::Manager, "registering a device")?;
        self.register_device(
            NewDevice {
                imei,
                group,
                name,
                serial,
                created_at: now_ms(),
            },
            caller.account,
        )
        .await
    }

    /// Renames, suspends or moves a device (manager on its group; moving: on the new group too).
    pub async fn update_device(
        &self,
        caller: Option<&Caller>,
        id: &str,
        name: Option<&str>,
        serial: Option<&str>,
        status: Option<&str>,
        group_id: Option<&str>,
    ) -> Result<Device, DomainError> {
        let caller = require(caller)?;
        let update = DeviceUpdate {
            name: check_optional("name", name, MAX_NAME_CHARS)?,
            serial: check_optional("serial", serial, MAX_NAME_CHARS)?,
            status: status.map(DeviceStatus::parse).transpose()?,
            group: group_id
                .map(|g| GroupId::parse("group_id", g))
                .transpose()?,
        };
        if update == DeviceUpdate::default() {
            return Err(DomainError::invalid(
                "device_update",
                "device_update needs at least one of name, serial, status, group_id",
            ));
        }
        let device = self.device_with_role(caller, id, Role::Manager).await?;
        if let Some(g) = update.group {
            let scope = self.scope(caller.account).await?;
            Self::demand(&scope, g, Role::Manager, "moving a device there")?;
            self.same_organization(g, device.organization, "a device")
                .await?;
        }
        self.store.update_device(&device.imei, &update).await?;
        self.device_changed();
        if update.group.is_some() {
            self.rights_changed();
        }
        self.require_registered(&device.imei).await
    }

    /// Deletes a device and everything recorded from it (manager on its group).
    pub async fn remove_device(
        &self,
        caller: Option<&Caller>,
        id: &str,
    ) -> Result<(), DomainError> {
        let caller = require(caller)?;
        let device = self.device_with_role(caller, id, Role::Manager).await?;
        self.store.delete_device(&device.imei).await?;
        self.device_changed();
        Ok(())
    }

    /// Devices and vehicles move only within their organization: their data (and the
    /// installation history tying them together) must never cross to another tenant, even in
    /// the hands of someone who manages groups in both.
    async fn same_organization(
        &self,
        group: GroupId,
        organization: crate::fleet::OrganizationId,
        what: &str,
    ) -> Result<(), DomainError> {
        let target = self
            .store
            .group(group)
            .await?
            .ok_or_else(|| not_found_group(group))?;
        if target.organization != organization {
            return Err(DomainError::invalid(
                "group_id",
                format!(
                    "{what} moves only within its organization: group {group} belongs to another one"
                ),
            ));
        }
        Ok(())
    }

    // ---------------------------------------------------------------- vehicles

    async fn vehicle_with_role(
        &self,
        caller: &Caller,
        id: VehicleId,
        needed: Role,
        what: &str,
    ) -> Result<(Vehicle, Scope), DomainError> {
        let scope = self.scope(caller.account).await?;
        let vehicle = self
            .store
            .vehicle(id)
            .await?
            .ok_or_else(|| not_found_vehicle(id))?;
        let Some(had) = scope.access.role_on(vehicle.group) else {
            return Err(not_found_vehicle(id));
        };
        if had < needed {
            return Err(forbidden(what, needed, had));
        }
        Ok((vehicle, scope))
    }

    pub async fn vehicle(&self, caller: Option<&Caller>, id: &str) -> Result<Vehicle, DomainError> {
        let caller = require(caller)?;
        let id = VehicleId::parse("id", id)?;
        Ok(self
            .vehicle_with_role(caller, id, Role::Viewer, "reading a vehicle")
            .await?
            .0)
    }

    pub async fn vehicles(
        &self,
        caller: Option<&Caller>,
        args: ListArgs<'_>,
        page: PageArgs<'_>,
    ) -> Result<Page<Vehicle>, DomainError> {
        let caller = require(caller)?;
        let scope = self.scope(caller.account).await?;
        let filter = Self::filter(&scope, &args)?;
        let req = PageRequest::parse("vehicles", FLEET_PAGES, page.page_size, page.page_id)?;
        let items = self
            .store
            .vehicles_page(&filter, id_after(&req, "vehicles")?, req.fetch())
            .await?;
        let count = self.store.count_vehicles(&filter).await?;
        Ok(req.page("vehicles", items, Some(count), |v| Position::Id(v.id.0)))
    }

    pub async fn create_vehicle(
        &self,
        caller: Option<&Caller>,
        group_id: &str,
        args: &VehicleArgs<'_>,
    ) -> Result<Vehicle, DomainError> {
        let caller = require(caller)?;
        let group = GroupId::parse("group_id", group_id)?;
        let mut details = VehicleDetails::default();
        apply_vehicle_args(&mut details, args)?;
        let scope = self.scope(caller.account).await?;
        Self::demand(&scope, group, Role::Manager, "creating a vehicle")?;
        let g = self
            .store
            .group(group)
            .await?
            .ok_or_else(|| not_found_group(group))?;
        let vehicle = self
            .store
            .insert_vehicle(g.organization, group, &details, now_ms())
            .await;
        vehicle.map_err(|e| vin_conflict(e, &details))
    }

    pub async fn update_vehicle(
        &self,
        caller: Option<&Caller>,
        id: &str,
        group_id: Option<&str>,
        args: &VehicleArgs<'_>,
    ) -> Result<Vehicle, DomainError> {
        let caller = require(caller)?;
        let id = VehicleId::parse("id", id)?;
        let group = group_id
            .map(|g| GroupId::parse("group_id", g))
            .transpose()?;
        let (mut vehicle, scope) = self
            .vehicle_with_role(caller, id, Role::Manager, "changing a vehicle")
            .await?;
        let before = vehicle.details.clone();
        apply_vehicle_args(&mut vehicle.details, args)?;
        if let Some(g) = group.filter(|g| *g != vehicle.group) {
            Self::demand(&scope, g, Role::Manager, "moving a vehicle there")?;
            self.same_organization(g, vehicle.organization, "a vehicle")
                .await?;
            vehicle.group = g;
        } else if vehicle.details == before && group.is_none() {
            return Err(DomainError::invalid(
                "vehicle_update",
                "vehicle_update needs at least one field to change",
            ));
        }
        vehicle.updated_at = now_ms();
        self.store
            .update_vehicle(&vehicle)
            .await
            .map_err(|e| vin_conflict(e, &vehicle.details))?;
        Ok(vehicle)
    }

    /// Deletes a vehicle and its installation history (manager on its group).
    pub async fn delete_vehicle(
        &self,
        caller: Option<&Caller>,
        id: &str,
    ) -> Result<(), DomainError> {
        let caller = require(caller)?;
        let id = VehicleId::parse("id", id)?;
        self.vehicle_with_role(caller, id, Role::Manager, "deleting a vehicle")
            .await?;
        Ok(self.store.delete_vehicle(id).await?)
    }

    // ---------------------------------------------------------------- installations

    /// Installs a device in a vehicle (manager on both): the device leaves the vehicle it was
    /// in, and the vehicle's previous device leaves it; both stay in the history.
    pub async fn attach_device(
        &self,
        caller: Option<&Caller>,
        device_id: &str,
        vehicle_id: &str,
    ) -> Result<Installation, DomainError> {
        let caller = require(caller)?;
        let vehicle = VehicleId::parse("vehicle_id", vehicle_id)?;
        let device = self
            .device_with_role(caller, device_id, Role::Manager)
            .await?;
        let (vehicle, _) = self
            .vehicle_with_role(caller, vehicle, Role::Manager, "installing a device")
            .await?;
        if vehicle.organization != device.organization {
            return Err(DomainError::invalid(
                "vehicle_id",
                "a device is installed only in a vehicle of its own organization",
            ));
        }
        Ok(self
            .store
            .install(&device.imei, vehicle.id, now_ms())
            .await?)
    }

    /// Removes a device from its vehicle (manager on the device's group).
    pub async fn detach_device(
        &self,
        caller: Option<&Caller>,
        device_id: &str,
    ) -> Result<Installation, DomainError> {
        let caller = require(caller)?;
        let device = self
            .device_with_role(caller, device_id, Role::Manager)
            .await?;
        self.store
            .uninstall(&device.imei, now_ms())
            .await?
            .ok_or_else(|| {
                DomainError::invalid(
                    "device_id",
                    format!("device {} is not installed in a vehicle", device.imei),
                )
            })
    }

    /// A device's installations, newest first (vehicles the caller cannot see are left out).
    pub async fn device_installations(
        &self,
        caller: Option<&Caller>,
        device_id: &str,
    ) -> Result<Vec<Installation>, DomainError> {
        let caller = require(caller)?;
        let device = self
            .device_with_role(caller, device_id, Role::Viewer)
            .await?;
        let all = self.store.installations_of_device(&device.imei).await?;
        self.visible_installations(caller, all).await
    }

    /// A vehicle's installations, newest first (devices the caller cannot see are left out).
    pub async fn vehicle_installations(
        &self,
        caller: Option<&Caller>,
        vehicle: VehicleId,
    ) -> Result<Vec<Installation>, DomainError> {
        let caller = require(caller)?;
        self.vehicle_with_role(caller, vehicle, Role::Viewer, "reading a vehicle")
            .await?;
        let all = self.store.installations_of_vehicle(vehicle).await?;
        self.visible_installations(caller, all).await
    }

    async fn visible_installations(
        &self,
        caller: &Caller,
        all: Vec<Installation>,
    ) -> Result<Vec<Installation>, DomainError> {
        let scope = self.scope(caller.account).await?;
        let mut out = Vec::with_capacity(all.len());
        for i in all {
            let device_ok = match self.store.device_by_imei(&i.imei).await? {
                Some(d) => scope.access.role_on(d.group).is_some(),
                None => false,
            };
            let vehicle_ok = match self.store.vehicle(i.vehicle).await? {
                Some(v) => scope.access.role_on(v.group).is_some(),
                None => false,
            };
            if device_ok && vehicle_ok {
                out.push(i);
            }
        }
        Ok(out)
    }
}

fn vin_conflict(e: crate::error::StoreError, details: &VehicleDetails) -> DomainError {
    match e {
        crate::error::StoreError::Conflict(_) => DomainError::Conflict(format!(
            "a vehicle with VIN {} already exists in this organization",
            details.vin.as_deref().unwrap_or("?")
        )),
        other => other.into(),
    }
}

fn apply_vehicle_args(d: &mut VehicleDetails, a: &VehicleArgs<'_>) -> Result<(), DomainError> {
    let set = |slot: &mut Option<String>, v: Option<Option<String>>| {
        if let Some(v) = v {
            *slot = v;
        }
    };
    set(&mut d.name, check_optional("name", a.name, MAX_NAME_CHARS)?);
    set(&mut d.plate, check_optional("plate", a.plate, 20)?);
    set(&mut d.make, check_optional("make", a.make, 60)?);
    set(&mut d.model, check_optional("model", a.model, 60)?);
    match a.vin.map(str::trim) {
        None => {}
        Some("") => d.vin = None,
        Some(v) => d.vin = Some(check_vin(v)?),
    }
    if let Some(y) = a.year {
        d.year = Some(check_year(y, &now_ms())?);
    }
    match a.fuel_type.map(str::trim) {
        None => {}
        Some("") => d.fuel_type = None,
        Some(f) => d.fuel_type = Some(crate::fleet::FuelType::parse(f)?),
    }
    Ok(())
}

/// Levels from the root down to `group` (the root is 1).
fn depth(nodes: &[GroupNode], group: GroupId) -> usize {
    let parent = |g: GroupId| nodes.iter().find(|n| n.id == g).and_then(|n| n.parent);
    let mut d = 1;
    let mut at = group;
    while let Some(p) = parent(at) {
        d += 1;
        at = p;
        if d > MAX_GROUP_DEPTH * 2 {
            break;
        }
    }
    d
}

/// Levels of `group`'s subtree (a leaf is 1).
fn subtree_height(nodes: &[GroupNode], group: GroupId) -> usize {
    subtree(nodes, group)
        .into_iter()
        .map(|g| {
            let mut d = 1;
            let mut at = g;
            while at != group {
                match nodes.iter().find(|n| n.id == at).and_then(|n| n.parent) {
                    Some(p) => {
                        d += 1;
                        at = p;
                    }
                    None => break,
                }
            }
            d
        })
        .max()
        .unwrap_or(1)
}
