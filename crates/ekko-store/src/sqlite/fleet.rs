//! The fleet graph in SQLite (migration 0008): organizations, groups, roles, invitations,
//! devices' group and details, vehicles and installations.
//!
//! Lists are filtered by the groups the domain computed for the caller, bound as one JSON
//! array (`json_each`), so a caller's rights are one bound parameter whatever their size.

use async_trait::async_trait;
use ekko_core::account::{Account, AccountProfile, NewAccount, ProfileUpdate};
use ekko_core::device::{Device, DeviceUpdate, NewDevice};
use ekko_core::error::StoreError;
use ekko_core::fleet::{
    DeviceStatus, FuelType, Group, GroupId, GroupNode, Installation, Invitation, ListFilter,
    Organization, OrganizationId, Role, RoleGrant, Vehicle, VehicleDetails, VehicleId,
};
use ekko_core::ports::{FleetStore, GroupContents, StoreResult};
use ekko_core::time::Timestamp;
use ekko_core::{AccountId, Imei};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{SqliteStore, backend, inserted, ts};

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("unexpected data in the database: {e}"))
}

/// Every device query selects this: the row, its organization, and its last contact.
pub(super) const DEVICE_SELECT: &str = "SELECT d.*, g.organization_id AS organization_id, \
     (SELECT MAX(v.recorded_at) FROM device_last_values v WHERE v.imei = d.imei) AS last_contact \
     FROM devices d JOIN groups g ON g.id = d.group_id";

pub(super) fn account_from_row(r: &SqliteRow) -> StoreResult<Account> {
    let id: String = r.try_get("id").map_err(backend)?;
    let last: Option<i64> = r.try_get("last_sign_in_at").map_err(backend)?;
    Ok(Account {
        id: AccountId::parse(&id).map_err(corrupt)?,
        email: r.try_get("email").map_err(backend)?,
        full_name: r.try_get("full_name").map_err(backend)?,
        password_hash: r.try_get("password_hash").map_err(backend)?,
        organization: OrganizationId(r.try_get("organization_id").map_err(backend)?),
        profile: AccountProfile {
            short_name: r.try_get("short_name").map_err(backend)?,
            phone: r.try_get("phone").map_err(backend)?,
            company_name: r.try_get("company_name").map_err(backend)?,
            country_code: r.try_get("country_code").map_err(backend)?,
            language: r.try_get("language").map_err(backend)?,
            time_zone: r.try_get("time_zone").map_err(backend)?,
        },
        created_at: ts(r.try_get("created_at").map_err(backend)?)?,
        updated_at: ts(r.try_get("updated_at").map_err(backend)?)?,
        last_sign_in_at: last.map(ts).transpose()?,
    })
}

pub(super) fn device_from_row(r: &SqliteRow) -> StoreResult<Device> {
    let imei: String = r.try_get("imei").map_err(backend)?;
    let status: String = r.try_get("status").map_err(backend)?;
    let last: Option<i64> = r.try_get("last_contact").map_err(backend)?;
    Ok(Device {
        imei: Imei::parse(&imei).map_err(corrupt)?,
        organization: OrganizationId(r.try_get("organization_id").map_err(backend)?),
        group: GroupId(r.try_get("group_id").map_err(backend)?),
        name: r.try_get("name").map_err(backend)?,
        serial: r.try_get("serial").map_err(backend)?,
        status: DeviceStatus::parse(&status).map_err(corrupt)?,
        created_at: ts(r.try_get("created_at").map_err(backend)?)?,
        last_contact: last.map(ts).transpose()?,
    })
}

fn group_from_row(r: &SqliteRow) -> StoreResult<Group> {
    let parent: Option<i64> = r.try_get("parent_id").map_err(backend)?;
    Ok(Group {
        id: GroupId(r.try_get("id").map_err(backend)?),
        organization: OrganizationId(r.try_get("organization_id").map_err(backend)?),
        parent: parent.map(GroupId),
        name: r.try_get("name").map_err(backend)?,
        description: r.try_get("description").map_err(backend)?,
        created_at: ts(r.try_get("created_at").map_err(backend)?)?,
        updated_at: ts(r.try_get("updated_at").map_err(backend)?)?,
    })
}

fn vehicle_from_row(r: &SqliteRow) -> StoreResult<Vehicle> {
    let fuel: Option<String> = r.try_get("fuel_type").map_err(backend)?;
    Ok(Vehicle {
        id: VehicleId(r.try_get("id").map_err(backend)?),
        organization: OrganizationId(r.try_get("organization_id").map_err(backend)?),
        group: GroupId(r.try_get("group_id").map_err(backend)?),
        details: VehicleDetails {
            name: r.try_get("name").map_err(backend)?,
            vin: r.try_get("vin").map_err(backend)?,
            plate: r.try_get("plate").map_err(backend)?,
            make: r.try_get("make").map_err(backend)?,
            model: r.try_get("model").map_err(backend)?,
            year: r.try_get("year").map_err(backend)?,
            fuel_type: fuel
                .as_deref()
                .map(FuelType::parse)
                .transpose()
                .map_err(corrupt)?,
        },
        created_at: ts(r.try_get("created_at").map_err(backend)?)?,
        updated_at: ts(r.try_get("updated_at").map_err(backend)?)?,
    })
}

fn installation_from_row(r: &SqliteRow) -> StoreResult<Installation> {
    let imei: String = r.try_get("imei").map_err(backend)?;
    let removed: Option<i64> = r.try_get("removed_at").map_err(backend)?;
    Ok(Installation {
        id: r.try_get("id").map_err(backend)?,
        imei: Imei::parse(&imei).map_err(corrupt)?,
        vehicle: VehicleId(r.try_get("vehicle_id").map_err(backend)?),
        installed_at: ts(r.try_get("installed_at").map_err(backend)?)?,
        removed_at: removed.map(ts).transpose()?,
    })
}

fn grant_from_row(r: &SqliteRow) -> StoreResult<RoleGrant> {
    let account: String = r.try_get("account_id").map_err(backend)?;
    let role: String = r.try_get("role").map_err(backend)?;
    Ok(RoleGrant {
        account: AccountId::parse(&account).map_err(corrupt)?,
        group: GroupId(r.try_get("group_id").map_err(backend)?),
        organization: OrganizationId(r.try_get("organization_id").map_err(backend)?),
        role: Role::parse(&role).map_err(corrupt)?,
    })
}

/// The groups of a filter as one JSON array parameter.
fn groups_json(filter: &ListFilter) -> String {
    serde_json::to_string(&filter.groups.iter().map(|g| g.0).collect::<Vec<_>>())
        .expect("ids serialize")
}

/// A LIKE pattern matching `text` anywhere, with LIKE's wildcards escaped (`ESCAPE '\'`).
fn like(text: Option<&str>) -> Option<String> {
    text.map(|t| {
        let escaped = t
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("%{escaped}%")
    })
}

/// What the role guards report (the domain turns it into a clear error).
pub const LAST_ADMIN: &str = "last admin of the root group";

const ROLE_SELECT: &str = "SELECT r.account_id, r.group_id, r.role, g.organization_id \
     FROM group_roles r JOIN groups g ON g.id = r.group_id";

#[async_trait]
impl FleetStore for SqliteStore {
    async fn insert_account(&self, a: &NewAccount, org_name: &str) -> StoreResult<Account> {
        let mut tx = self.writer.begin().await.map_err(backend)?;
        let at = a.created_at.timestamp_millis();
        let organization: i64 = sqlx::query_scalar(
            "INSERT INTO organizations (name, created_at, founder) VALUES (?, ?, ?) RETURNING id",
        )
        .bind(org_name)
        .bind(at)
        .bind(a.id.to_string())
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        let r = sqlx::query(
            "INSERT INTO accounts (id, email, full_name, password_hash, created_at, updated_at, organization_id) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(a.id.to_string())
        .bind(&a.email)
        .bind(&a.full_name)
        .bind(&a.password_hash)
        .bind(at)
        .bind(at)
        .bind(organization)
        .execute(&mut *tx)
        .await;
        inserted(r, || format!("account {}", a.email))?;
        let root: i64 = sqlx::query_scalar(
            "INSERT INTO groups (organization_id, parent_id, name, created_at, updated_at) \
             VALUES (?, NULL, ?, ?, ?) RETURNING id",
        )
        .bind(organization)
        .bind(org_name)
        .bind(at)
        .bind(at)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query(
            "INSERT INTO group_roles (account_id, group_id, role, granted_at) VALUES (?, ?, 'admin', ?)",
        )
        .bind(a.id.to_string())
        .bind(root)
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let row = sqlx::query("SELECT * FROM accounts WHERE id = ?")
            .bind(a.id.to_string())
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        let account = account_from_row(&row)?;
        tx.commit().await.map_err(backend)?;
        Ok(account)
    }

    async fn update_account_profile(
        &self,
        id: AccountId,
        u: &ProfileUpdate,
        at: Timestamp,
    ) -> StoreResult<Option<Account>> {
        // Each optional column: keep it (flag 0) or set it (flag 1, value possibly NULL).
        let flag = |v: &Option<Option<String>>| (v.is_some() as i64, v.clone().flatten());
        let (sn, snv) = flag(&u.short_name);
        let (ph, phv) = flag(&u.phone);
        let (cn, cnv) = flag(&u.company_name);
        let (cc, ccv) = flag(&u.country_code);
        let (la, lav) = flag(&u.language);
        let (tz, tzv) = flag(&u.time_zone);
        sqlx::query(
            "UPDATE accounts SET full_name = COALESCE(?, full_name), \
             short_name = CASE WHEN ? THEN ? ELSE short_name END, \
             phone = CASE WHEN ? THEN ? ELSE phone END, \
             company_name = CASE WHEN ? THEN ? ELSE company_name END, \
             country_code = CASE WHEN ? THEN ? ELSE country_code END, \
             language = CASE WHEN ? THEN ? ELSE language END, \
             time_zone = CASE WHEN ? THEN ? ELSE time_zone END, \
             updated_at = ? WHERE id = ? RETURNING *",
        )
        .bind(u.full_name.as_deref())
        .bind(sn)
        .bind(snv)
        .bind(ph)
        .bind(phv)
        .bind(cn)
        .bind(cnv)
        .bind(cc)
        .bind(ccv)
        .bind(la)
        .bind(lav)
        .bind(tz)
        .bind(tzv)
        .bind(at.timestamp_millis())
        .bind(id.to_string())
        .fetch_optional(&self.writer)
        .await
        .map_err(backend)?
        .as_ref()
        .map(account_from_row)
        .transpose()
    }

    async fn record_sign_in(&self, id: AccountId, at: Timestamp) -> StoreResult<()> {
        sqlx::query("UPDATE accounts SET last_sign_in_at = ? WHERE id = ?")
            .bind(at.timestamp_millis())
            .bind(id.to_string())
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn organization(&self, id: OrganizationId) -> StoreResult<Option<Organization>> {
        let row = sqlx::query("SELECT * FROM organizations WHERE id = ?")
            .bind(id.0)
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?;
        row.map(|r| {
            Ok(Organization {
                id,
                name: r.try_get("name").map_err(backend)?,
                created_at: ts(r.try_get("created_at").map_err(backend)?)?,
            })
        })
        .transpose()
    }

    async fn root_group(&self, organization: OrganizationId) -> StoreResult<Option<Group>> {
        sqlx::query("SELECT * FROM groups WHERE organization_id = ? AND parent_id IS NULL")
            .bind(organization.0)
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?
            .as_ref()
            .map(group_from_row)
            .transpose()
    }

    async fn roles_of(&self, account: AccountId) -> StoreResult<Vec<RoleGrant>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "{ROLE_SELECT} WHERE r.account_id = ? ORDER BY r.group_id"
        )))
        .bind(account.to_string())
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?
        .iter()
        .map(grant_from_row)
        .collect()
    }

    async fn group_nodes(&self, orgs: &[OrganizationId]) -> StoreResult<Vec<GroupNode>> {
        let ids = serde_json::to_string(&orgs.iter().map(|o| o.0).collect::<Vec<_>>())
            .expect("ids serialize");
        sqlx::query(
            "SELECT id, parent_id FROM groups WHERE organization_id IN (SELECT value FROM json_each(?))",
        )
        .bind(ids)
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?
        .iter()
        .map(|r| {
            let parent: Option<i64> = r.try_get("parent_id").map_err(backend)?;
            Ok(GroupNode {
                id: GroupId(r.try_get("id").map_err(backend)?),
                parent: parent.map(GroupId),
            })
        })
        .collect()
    }

    async fn set_role(
        &self,
        account: AccountId,
        group: GroupId,
        role: Role,
        at: Timestamp,
    ) -> StoreResult<()> {
        // One statement, so the guard and the change are atomic: a root group's last admin is
        // never demoted, however many demotions race.
        let r = sqlx::query(
            "INSERT INTO group_roles (account_id, group_id, role, granted_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (account_id, group_id) DO UPDATE SET role = excluded.role, granted_at = excluded.granted_at \
             WHERE excluded.role = 'admin' OR NOT (group_roles.role = 'admin' AND \
               EXISTS (SELECT 1 FROM groups WHERE id = ?2 AND parent_id IS NULL) AND \
               (SELECT COUNT(*) FROM group_roles WHERE group_id = ?2 AND role = 'admin') = 1)",
        )
        .bind(account.to_string())
        .bind(group.0)
        .bind(role.as_str())
        .bind(at.timestamp_millis())
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        if r.rows_affected() == 0 {
            return Err(StoreError::Conflict(LAST_ADMIN.into()));
        }
        Ok(())
    }

    async fn remove_role(&self, account: AccountId, group: GroupId) -> StoreResult<bool> {
        let held: Option<String> = sqlx::query_scalar(
            "SELECT role FROM group_roles WHERE account_id = ? AND group_id = ?",
        )
        .bind(account.to_string())
        .bind(group.0)
        .fetch_optional(&self.writer)
        .await
        .map_err(backend)?;
        if held.is_none() {
            return Ok(false);
        }
        let r = sqlx::query(
            "DELETE FROM group_roles WHERE account_id = ?1 AND group_id = ?2 \
             AND NOT (role = 'admin' AND EXISTS (SELECT 1 FROM groups WHERE id = ?2 AND parent_id IS NULL) \
             AND (SELECT COUNT(*) FROM group_roles WHERE group_id = ?2 AND role = 'admin') = 1)",
        )
        .bind(account.to_string())
        .bind(group.0)
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        if r.rows_affected() == 0 {
            return Err(StoreError::Conflict(LAST_ADMIN.into()));
        }
        Ok(true)
    }

    async fn roles_on(&self, groups: &[GroupId]) -> StoreResult<Vec<RoleGrant>> {
        let ids = serde_json::to_string(&groups.iter().map(|g| g.0).collect::<Vec<_>>())
            .expect("ids serialize");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "{ROLE_SELECT} WHERE r.group_id IN (SELECT value FROM json_each(?)) ORDER BY r.group_id, r.account_id"
        )))
        .bind(ids)
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?
        .iter()
        .map(grant_from_row)
        .collect()
    }

    async fn insert_invitation(&self, i: &Invitation) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO invitations (code_hash, email, group_id, role, invited_by, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&i.code_hash)
        .bind(&i.email)
        .bind(i.group.0)
        .bind(i.role.as_str())
        .bind(i.invited_by.to_string())
        .bind(i.created_at.timestamp_millis())
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn take_invitation(&self, code_hash: &str) -> StoreResult<Option<Invitation>> {
        let row = sqlx::query("DELETE FROM invitations WHERE code_hash = ? RETURNING *")
            .bind(code_hash)
            .fetch_optional(&self.writer)
            .await
            .map_err(backend)?;
        row.map(|r| {
            let role: String = r.try_get("role").map_err(backend)?;
            let by: String = r.try_get("invited_by").map_err(backend)?;
            Ok(Invitation {
                code_hash: r.try_get("code_hash").map_err(backend)?,
                email: r.try_get("email").map_err(backend)?,
                group: GroupId(r.try_get("group_id").map_err(backend)?),
                role: Role::parse(&role).map_err(corrupt)?,
                invited_by: AccountId::parse(&by).map_err(corrupt)?,
                created_at: ts(r.try_get("created_at").map_err(backend)?)?,
            })
        })
        .transpose()
    }

    async fn accounts_page(
        &self,
        filter: &ListFilter,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Account>> {
        sqlx::query(
            "SELECT * FROM accounts a WHERE a.id > ? \
             AND EXISTS (SELECT 1 FROM group_roles r WHERE r.account_id = a.id AND r.group_id IN (SELECT value FROM json_each(?))) \
             AND (? IS NULL OR a.email LIKE ? ESCAPE '\\' OR a.full_name LIKE ? ESCAPE '\\') \
             ORDER BY a.id LIMIT ?",
        )
        .bind(after.unwrap_or(""))
        .bind(groups_json(filter))
        .bind(filter.text.as_deref())
        .bind(like(filter.text.as_deref()))
        .bind(like(filter.text.as_deref()))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?
        .iter()
        .map(account_from_row)
        .collect()
    }

    async fn count_accounts(&self, filter: &ListFilter) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM accounts a WHERE \
             EXISTS (SELECT 1 FROM group_roles r WHERE r.account_id = a.id AND r.group_id IN (SELECT value FROM json_each(?))) \
             AND (? IS NULL OR a.email LIKE ? ESCAPE '\\' OR a.full_name LIKE ? ESCAPE '\\')",
        )
        .bind(groups_json(filter))
        .bind(filter.text.as_deref())
        .bind(like(filter.text.as_deref()))
        .bind(like(filter.text.as_deref()))
        .fetch_one(&self.reader)
        .await
        .map_err(backend)?;
        Ok(n as u64)
    }

    async fn insert_group(
        &self,
        organization: OrganizationId,
        parent: GroupId,
        name: &str,
        description: Option<&str>,
        at: Timestamp,
    ) -> StoreResult<Group> {
        let row = sqlx::query(
            "INSERT INTO groups (organization_id, parent_id, name, description, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?) RETURNING *",
        )
        .bind(organization.0)
        .bind(parent.0)
        .bind(name)
        .bind(description)
        .bind(at.timestamp_millis())
        .bind(at.timestamp_millis())
        .fetch_one(&self.writer)
        .await
        .map_err(backend)?;
        group_from_row(&row)
    }

    async fn group(&self, id: GroupId) -> StoreResult<Option<Group>> {
        sqlx::query("SELECT * FROM groups WHERE id = ?")
            .bind(id.0)
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?
            .as_ref()
            .map(group_from_row)
            .transpose()
    }

    async fn update_group(&self, g: &Group) -> StoreResult<()> {
        // The move is checked and written in one transaction: two concurrent moves (A under B,
        // B under A) must not both pass a check made before either wrote.
        let mut tx = self.writer.begin().await.map_err(backend)?;
        if let Some(parent) = g.parent {
            let cycle: Option<i64> = sqlx::query_scalar(
                "WITH RECURSIVE up(id, depth) AS (SELECT ?1, 0 UNION ALL \
                 SELECT groups.parent_id, up.depth + 1 FROM groups JOIN up ON groups.id = up.id \
                 WHERE groups.parent_id IS NOT NULL AND up.depth < 1000) \
                 SELECT 1 FROM up WHERE id = ?2 LIMIT 1",
            )
            .bind(parent.0)
            .bind(g.id.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
            if cycle.is_some() {
                return Err(StoreError::Conflict(format!(
                    "group {} cannot move below itself",
                    g.id
                )));
            }
        }
        sqlx::query(
            "UPDATE groups SET name = ?, description = ?, parent_id = ?, updated_at = ? WHERE id = ?",
        )
        .bind(&g.name)
        .bind(&g.description)
        .bind(g.parent.map(|p| p.0))
        .bind(g.updated_at.timestamp_millis())
        .bind(g.id.0)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn delete_group(&self, id: GroupId) -> StoreResult<()> {
        sqlx::query("DELETE FROM groups WHERE id = ?")
            .bind(id.0)
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn group_contents(&self, id: GroupId) -> StoreResult<GroupContents> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM groups WHERE parent_id = ?1) AS g, \
             (SELECT COUNT(*) FROM devices WHERE group_id = ?1) AS d, \
             (SELECT COUNT(*) FROM vehicles WHERE group_id = ?1) AS v",
        )
        .bind(id.0)
        .fetch_one(&self.reader)
        .await
        .map_err(backend)?;
        let n =
            |c: &str| -> StoreResult<u64> { Ok(row.try_get::<i64, _>(c).map_err(backend)? as u64) };
        Ok(GroupContents {
            groups: n("g")?,
            devices: n("d")?,
            vehicles: n("v")?,
        })
    }

    async fn groups_page(
        &self,
        filter: &ListFilter,
        after: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<Group>> {
        sqlx::query(
            "SELECT * FROM groups WHERE id > ? AND id IN (SELECT value FROM json_each(?)) \
             AND (? IS NULL OR name LIKE ? ESCAPE '\\') ORDER BY id LIMIT ?",
        )
        .bind(after.unwrap_or(0))
        .bind(groups_json(filter))
        .bind(filter.text.as_deref())
        .bind(like(filter.text.as_deref()))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?
        .iter()
        .map(group_from_row)
        .collect()
    }

    async fn count_groups(&self, filter: &ListFilter) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM groups WHERE id IN (SELECT value FROM json_each(?)) \
             AND (? IS NULL OR name LIKE ? ESCAPE '\\')",
        )
        .bind(groups_json(filter))
        .bind(filter.text.as_deref())
        .bind(like(filter.text.as_deref()))
        .fetch_one(&self.reader)
        .await
        .map_err(backend)?;
        Ok(n as u64)
    }

    async fn update_device(&self, imei: &Imei, u: &DeviceUpdate) -> StoreResult<()> {
        let flag = |v: &Option<Option<String>>| (v.is_some() as i64, v.clone().flatten());
        let (n, nv) = flag(&u.name);
        let (s, sv) = flag(&u.serial);
        sqlx::query(
            "UPDATE devices SET name = CASE WHEN ? THEN ? ELSE name END, \
             serial = CASE WHEN ? THEN ? ELSE serial END, \
             status = COALESCE(?, status), group_id = COALESCE(?, group_id) WHERE imei = ?",
        )
        .bind(n)
        .bind(nv)
        .bind(s)
        .bind(sv)
        .bind(u.status.map(|s| s.as_str()))
        .bind(u.group.map(|g| g.0))
        .bind(imei.as_str())
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn delete_device(&self, imei: &Imei) -> StoreResult<()> {
        let mut tx = self.writer.begin().await.map_err(backend)?;
        for table in [
            "device_last_values",
            "tracks",
            "presences",
            "messages",
            "pokes",
            "installations",
            "devices",
        ] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE imei = ?"
            )))
            .bind(imei.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn devices_page(
        &self,
        filter: &ListFilter,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Device>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "{DEVICE_SELECT} WHERE d.imei > ? AND d.group_id IN (SELECT value FROM json_each(?)) \
             AND (? IS NULL OR d.status = ?) \
             AND (? IS NULL OR d.imei LIKE ? ESCAPE '\\' OR d.name LIKE ? ESCAPE '\\' OR d.serial LIKE ? ESCAPE '\\') \
             ORDER BY d.imei LIMIT ?"
        )))
        .bind(after.unwrap_or(""))
        .bind(groups_json(filter))
        .bind(filter.status.map(|s| s.as_str()))
        .bind(filter.status.map(|s| s.as_str()))
        .bind(filter.text.as_deref())
        .bind(like(filter.text.as_deref()))
        .bind(like(filter.text.as_deref()))
        .bind(like(filter.text.as_deref()))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?
        .iter()
        .map(device_from_row)
        .collect()
    }

    async fn count_devices(&self, filter: &ListFilter) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM devices d WHERE d.group_id IN (SELECT value FROM json_each(?)) \
             AND (? IS NULL OR d.status = ?) \
             AND (? IS NULL OR d.imei LIKE ? ESCAPE '\\' OR d.name LIKE ? ESCAPE '\\' OR d.serial LIKE ? ESCAPE '\\')",
        )
        .bind(groups_json(filter))
        .bind(filter.status.map(|s| s.as_str()))
        .bind(filter.status.map(|s| s.as_str()))
        .bind(filter.text.as_deref())
        .bind(like(filter.text.as_deref()))
        .bind(like(filter.text.as_deref()))
        .bind(like(filter.text.as_deref()))
        .fetch_one(&self.reader)
        .await
        .map_err(backend)?;
        Ok(n as u64)
    }

    async fn insert_vehicle(
        &self,
        organization: OrganizationId,
        group: GroupId,
        d: &VehicleDetails,
        at: Timestamp,
    ) -> StoreResult<Vehicle> {
        let r = sqlx::query(
            "INSERT INTO vehicles (organization_id, group_id, name, vin, plate, make, model, year, fuel_type, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
        )
        .bind(organization.0)
        .bind(group.0)
        .bind(&d.name)
        .bind(&d.vin)
        .bind(&d.plate)
        .bind(&d.make)
        .bind(&d.model)
        .bind(d.year)
        .bind(d.fuel_type.map(|f| f.as_str()))
        .bind(at.timestamp_millis())
        .bind(at.timestamp_millis())
        .fetch_one(&self.writer)
        .await;
        match r {
            Ok(row) => vehicle_from_row(&row),
            Err(e) => {
                inserted(Err::<(), _>(e), || "vehicle".to_owned())?;
                unreachable!("inserted() maps every error")
            }
        }
    }

    async fn vehicle(&self, id: VehicleId) -> StoreResult<Option<Vehicle>> {
        sqlx::query("SELECT * FROM vehicles WHERE id = ?")
            .bind(id.0)
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?
            .as_ref()
            .map(vehicle_from_row)
            .transpose()
    }

    async fn update_vehicle(&self, v: &Vehicle) -> StoreResult<()> {
        let r = sqlx::query(
            "UPDATE vehicles SET organization_id = ?, group_id = ?, name = ?, vin = ?, plate = ?, make = ?, model = ?, \
             year = ?, fuel_type = ?, updated_at = ? WHERE id = ?",
        )
        .bind(v.organization.0)
        .bind(v.group.0)
        .bind(&v.details.name)
        .bind(&v.details.vin)
        .bind(&v.details.plate)
        .bind(&v.details.make)
        .bind(&v.details.model)
        .bind(v.details.year)
        .bind(v.details.fuel_type.map(|f| f.as_str()))
        .bind(v.updated_at.timestamp_millis())
        .bind(v.id.0)
        .execute(&self.writer)
        .await;
        inserted(r, || format!("vehicle {}", v.id))
    }

    async fn delete_vehicle(&self, id: VehicleId) -> StoreResult<()> {
        let mut tx = self.writer.begin().await.map_err(backend)?;
        sqlx::query("DELETE FROM installations WHERE vehicle_id = ?")
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("DELETE FROM vehicles WHERE id = ?")
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn vehicles_page(
        &self,
        filter: &ListFilter,
        after: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<Vehicle>> {
        sqlx::query(
            "SELECT * FROM vehicles WHERE id > ?1 AND group_id IN (SELECT value FROM json_each(?2)) \
             AND (?3 IS NULL OR name LIKE ?4 ESCAPE '\\' OR vin LIKE ?4 ESCAPE '\\' OR plate LIKE ?4 ESCAPE '\\' \
                  OR make LIKE ?4 ESCAPE '\\' OR model LIKE ?4 ESCAPE '\\') ORDER BY id LIMIT ?5",
        )
        .bind(after.unwrap_or(0))
        .bind(groups_json(filter))
        .bind(filter.text.as_deref())
        .bind(like(filter.text.as_deref()))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?
        .iter()
        .map(vehicle_from_row)
        .collect()
    }

    async fn count_vehicles(&self, filter: &ListFilter) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM vehicles WHERE group_id IN (SELECT value FROM json_each(?1)) \
             AND (?2 IS NULL OR name LIKE ?3 ESCAPE '\\' OR vin LIKE ?3 ESCAPE '\\' OR plate LIKE ?3 ESCAPE '\\' \
                  OR make LIKE ?3 ESCAPE '\\' OR model LIKE ?3 ESCAPE '\\')",
        )
        .bind(groups_json(filter))
        .bind(filter.text.as_deref())
        .bind(like(filter.text.as_deref()))
        .fetch_one(&self.reader)
        .await
        .map_err(backend)?;
        Ok(n as u64)
    }

    async fn install(
        &self,
        imei: &Imei,
        vehicle: VehicleId,
        at: Timestamp,
    ) -> StoreResult<Installation> {
        let mut tx = self.writer.begin().await.map_err(backend)?;
        // Already installed there: nothing changes (no zero-length installation).
        let open = sqlx::query(
            "SELECT * FROM installations WHERE imei = ? AND vehicle_id = ? AND removed_at IS NULL",
        )
        .bind(imei.as_str())
        .bind(vehicle.0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        if let Some(row) = open {
            return installation_from_row(&row);
        }
        sqlx::query(
            "UPDATE installations SET removed_at = ? WHERE removed_at IS NULL AND (imei = ? OR vehicle_id = ?)",
        )
        .bind(at.timestamp_millis())
        .bind(imei.as_str())
        .bind(vehicle.0)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let row = sqlx::query(
            "INSERT INTO installations (imei, vehicle_id, installed_at) VALUES (?, ?, ?) RETURNING *",
        )
        .bind(imei.as_str())
        .bind(vehicle.0)
        .bind(at.timestamp_millis())
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        let installation = installation_from_row(&row)?;
        tx.commit().await.map_err(backend)?;
        Ok(installation)
    }

    async fn uninstall(&self, imei: &Imei, at: Timestamp) -> StoreResult<Option<Installation>> {
        sqlx::query(
            "UPDATE installations SET removed_at = ? WHERE imei = ? AND removed_at IS NULL RETURNING *",
        )
        .bind(at.timestamp_millis())
        .bind(imei.as_str())
        .fetch_optional(&self.writer)
        .await
        .map_err(backend)?
        .as_ref()
        .map(installation_from_row)
        .transpose()
    }

    async fn installations_of_device(&self, imei: &Imei) -> StoreResult<Vec<Installation>> {
        sqlx::query(
            "SELECT * FROM installations WHERE imei = ? ORDER BY installed_at DESC, id DESC",
        )
        .bind(imei.as_str())
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?
        .iter()
        .map(installation_from_row)
        .collect()
    }

    async fn installations_of_vehicle(&self, vehicle: VehicleId) -> StoreResult<Vec<Installation>> {
        sqlx::query(
            "SELECT * FROM installations WHERE vehicle_id = ? ORDER BY installed_at DESC, id DESC",
        )
        .bind(vehicle.0)
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?
        .iter()
        .map(installation_from_row)
        .collect()
    }
}

impl SqliteStore {
    /// Registers a device (the `Store` method lives here with the other device writes).
    pub(super) async fn insert_new_device(
        &self,
        d: &NewDevice,
        registered_by: AccountId,
    ) -> StoreResult<Device> {
        let r = sqlx::query(
            "INSERT INTO devices (imei, owner, created_at, group_id, name, serial) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(d.imei.as_str())
        .bind(registered_by.to_string())
        .bind(d.created_at.timestamp_millis())
        .bind(d.group.0)
        .bind(&d.name)
        .bind(&d.serial)
        .execute(&self.writer)
        .await;
        inserted(r, || format!("device {}", d.imei))?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{DEVICE_SELECT} WHERE d.imei = ?"
        )))
        .bind(d.imei.as_str())
        .fetch_one(&self.writer)
        .await
        .map_err(backend)?;
        device_from_row(&row)
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use ekko_core::fleet::Role;
    use ekko_core::ports::{FleetStore, Store};
    use ekko_core::{AccountId, Imei};
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

    use super::super::{DB_FILE, MIGRATOR, SqliteStore};

    /// A database from before the fleet graph (migrations up to 0007) with two accounts and a
    /// device each: after migration 0008 every account is admin of its own organization's
    /// root group, and its devices are there.
    #[tokio::test]
    async fn migration_0008_gives_every_account_an_organization_and_keeps_its_devices() {
        let dir = tempfile::tempdir().unwrap();
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .unwrap()
            .filename(dir.path().join(DB_FILE))
            .create_if_missing(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await
            .unwrap();
        MIGRATOR.run_to(7, &pool).await.unwrap();
        let a = AccountId::new_random();
        let b = AccountId::new_random();
        for (id, email, imei) in [
            (a, "a@x.com", "359881234567899"),
            (b, "b@x.com", "356307042441013"),
        ] {
            sqlx::query("INSERT INTO accounts (id, email, full_name, password_hash, created_at, updated_at) VALUES (?, ?, 'N', 'h', 1, 1)")
                .bind(id.to_string())
                .bind(email)
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query("INSERT INTO devices (imei, owner, created_at) VALUES (?, ?, 1)")
                .bind(imei)
                .bind(id.to_string())
                .execute(&pool)
                .await
                .unwrap();
        }
        pool.close().await;

        let s = SqliteStore::open(dir.path()).await.unwrap();
        let (ga, gb) = (s.roles_of(a).await.unwrap(), s.roles_of(b).await.unwrap());
        assert_eq!(ga.len(), 1);
        assert_eq!(ga[0].role, Role::Admin);
        assert_ne!(ga[0].organization, gb[0].organization);
        let account = s.account_by_id(a).await.unwrap().unwrap();
        assert_eq!(account.organization, ga[0].organization);
        let root = s.root_group(account.organization).await.unwrap().unwrap();
        assert_eq!(root.id, ga[0].group);
        let device = s
            .device_by_imei(&Imei::parse("359881234567899").unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(device.group, root.id);
        assert_eq!(device.organization, account.organization);
    }
}
