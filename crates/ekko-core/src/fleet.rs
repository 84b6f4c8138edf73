//! The fleet graph: organizations, the tree of groups in each, the roles accounts hold on
//! groups, vehicles, and the history of which device was installed in which vehicle.
//!
//! Rights come from roles and flow *down* the tree: a role on a group applies to every group
//! below it, and where an account holds several, the strongest wins. What each role may do
//! is [`Role`]'s documentation; [`Access`] answers "what may this account do on that group".

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::ids::{AccountId, Imei};
use crate::time::Timestamp;

macro_rules! numeric_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(pub i64);

        impl $name {
            /// Parses the decimal string an API caller sends (IDs are strings on output; a
            /// JSON number is accepted too and kept as its decimal digits).
            pub fn parse(field: &str, s: &str) -> Result<Self, DomainError> {
                let t = s.trim();
                match t.parse::<i64>() {
                    Ok(n) if n > 0 && t.bytes().all(|b| b.is_ascii_digit()) => Ok($name(n)),
                    _ => Err(DomainError::invalid(
                        field,
                        format!(
                            "{field} must be {} id: a positive integer written as a string, e.g. \"12\" (got '{}')",
                            $what,
                            t.chars().take(40).collect::<String>()
                        ),
                    )),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

numeric_id!(
    /// An organization: the tenant. Nothing is ever shared between organizations except by a
    /// role an organization's admin grants on one of its groups.
    OrganizationId,
    "an organization"
);
numeric_id!(
    /// A group of an organization's tree.
    GroupId,
    "a group"
);
numeric_id!(
    /// A vehicle.
    VehicleId,
    "a vehicle"
);

#[derive(Clone, Debug, PartialEq)]
pub struct Organization {
    pub id: OrganizationId,
    pub name: String,
    pub created_at: Timestamp,
}

/// A group: holds devices, vehicles, accounts' roles and other groups. Each organization has
/// exactly one root group (no parent), created with it.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub id: GroupId,
    pub organization: OrganizationId,
    pub parent: Option<GroupId>,
    pub name: String,
    pub description: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What an account may do on a group and every group below it.
///
/// | role | may |
/// |---|---|
/// | `viewer` | see the groups, their devices, vehicles, installations and data, the accounts holding roles there; subscribe to the devices |
/// | `manager` | all a viewer may, and create, update, move and delete devices and vehicles, attach and detach devices, send messages and pokes |
/// | `admin` | all a manager may, and create, rename, move and delete subgroups, grant and revoke roles (any role), invite accounts |
///
/// Moving a thing between groups needs the role on both groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Manager,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Manager => "manager",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Result<Role, DomainError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "viewer" => Ok(Role::Viewer),
            "manager" => Ok(Role::Manager),
            "admin" => Ok(Role::Admin),
            other => Err(DomainError::invalid(
                "role",
                format!("role must be viewer, manager or admin (got '{other}')"),
            )),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role an account holds on a group (the group's organization with it, to load its tree).
#[derive(Clone, Debug, PartialEq)]
pub struct RoleGrant {
    pub account: AccountId,
    pub group: GroupId,
    pub organization: OrganizationId,
    pub role: Role,
}

/// A role waiting for an account that does not exist yet. Ekko does not confirm emails, so
/// the role is not given to whoever signs up with the address: the invitee presents the
/// invitation's one-time code (`invitation_accept`). Only the code's SHA-256 is stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Invitation {
    pub code_hash: String,
    pub email: String,
    pub group: GroupId,
    pub role: Role,
    pub invited_by: AccountId,
    pub created_at: Timestamp,
}

/// A group's place in its tree: all [`Access`] needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupNode {
    pub id: GroupId,
    pub parent: Option<GroupId>,
}

/// Whether a device's data is taken in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceStatus {
    /// Registered and accepted: its records are stored and published.
    Active,
    /// Registered but refused at ingestion (lost, stolen, unpaid…), like an unknown device.
    Suspended,
}

impl DeviceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Active => "active",
            DeviceStatus::Suspended => "suspended",
        }
    }

    pub fn parse(s: &str) -> Result<Self, DomainError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "active" => Ok(DeviceStatus::Active),
            "suspended" => Ok(DeviceStatus::Suspended),
            other => Err(DomainError::invalid(
                "status",
                format!("status must be active or suspended (got '{other}')"),
            )),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FuelType {
    Petrol,
    Diesel,
    Electric,
    Hybrid,
    PluginHybrid,
    Lpg,
    Cng,
    Hydrogen,
    Other,
}

impl FuelType {
    pub const ALL: [FuelType; 9] = [
        FuelType::Petrol,
        FuelType::Diesel,
        FuelType::Electric,
        FuelType::Hybrid,
        FuelType::PluginHybrid,
        FuelType::Lpg,
        FuelType::Cng,
        FuelType::Hydrogen,
        FuelType::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FuelType::Petrol => "petrol",
            FuelType::Diesel => "diesel",
            FuelType::Electric => "electric",
            FuelType::Hybrid => "hybrid",
            FuelType::PluginHybrid => "plugin_hybrid",
            FuelType::Lpg => "lpg",
            FuelType::Cng => "cng",
            FuelType::Hydrogen => "hydrogen",
            FuelType::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let t = s.trim().to_ascii_lowercase().replace('-', "_");
        FuelType::ALL
            .into_iter()
            .find(|f| f.as_str() == t)
            .ok_or_else(|| {
                DomainError::invalid(
                    "fuel_type",
                    format!(
                        "fuel_type must be one of {} (got '{}')",
                        FuelType::ALL.map(|f| f.as_str()).join(", "),
                        s.trim()
                    ),
                )
            })
    }
}

/// A vehicle. Every descriptive field is optional: fleets know different things about their
/// vehicles, and a vehicle is often created before its papers are at hand.
#[derive(Clone, Debug, PartialEq)]
pub struct Vehicle {
    pub id: VehicleId,
    pub organization: OrganizationId,
    pub group: GroupId,
    pub details: VehicleDetails,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct VehicleDetails {
    pub name: Option<String>,
    /// ISO 3779: 17 characters, letters (not I, O, Q) and digits; stored upper-case.
    pub vin: Option<String>,
    pub plate: Option<String>,
    pub make: Option<String>,
    pub model: Option<String>,
    pub year: Option<i32>,
    pub fuel_type: Option<FuelType>,
}

/// A device installed in a vehicle from `installed_at` until `removed_at` (open while it is
/// still there). A device is in at most one vehicle at a time and a vehicle holds at most one
/// device at a time; installing elsewhere closes the open installation.
#[derive(Clone, Debug, PartialEq)]
pub struct Installation {
    pub id: i64,
    pub imei: Imei,
    pub vehicle: VehicleId,
    pub installed_at: Timestamp,
    pub removed_at: Option<Timestamp>,
}

/// Filters of the device, vehicle, group and account lists.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ListFilter {
    /// Only things in these groups (the caller's visible groups, or a subtree of them).
    pub groups: Vec<GroupId>,
    /// Case-insensitive substring of the thing's text fields (IMEI, name, serial; VIN, plate,
    /// make, model; group name; email, full name).
    pub text: Option<String>,
    /// Devices only.
    pub status: Option<DeviceStatus>,
}

/// What one account may do, group by group: its roles pushed down its organizations' trees.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Access {
    effective: HashMap<GroupId, Role>,
}

impl Access {
    /// From an account's roles and the trees of the organizations they are in.
    pub fn compute(grants: &[RoleGrant], nodes: &[GroupNode]) -> Access {
        let mut children: HashMap<GroupId, Vec<GroupId>> = HashMap::new();
        for n in nodes {
            if let Some(p) = n.parent {
                children.entry(p).or_default().push(n.id);
            }
        }
        let mut effective: HashMap<GroupId, Role> = HashMap::new();
        for g in grants {
            // `seen` makes the walk finite even over a corrupt tree (a cycle): rights are
            // computed on every request, and must never loop.
            let mut seen = HashSet::new();
            let mut stack = vec![g.group];
            while let Some(id) = stack.pop() {
                if !seen.insert(id) {
                    continue;
                }
                let slot = effective.entry(id).or_insert(g.role);
                if *slot < g.role {
                    *slot = g.role;
                }
                if let Some(kids) = children.get(&id) {
                    stack.extend(kids.iter().copied());
                }
            }
        }
        Access { effective }
    }

    /// The account's role on `group` (held there or inherited), if any.
    pub fn role_on(&self, group: GroupId) -> Option<Role> {
        self.effective.get(&group).copied()
    }

    /// At least `needed` on `group`?
    pub fn can(&self, group: GroupId, needed: Role) -> bool {
        self.role_on(group).is_some_and(|r| r >= needed)
    }

    /// Every group the account may see, sorted.
    pub fn visible_groups(&self) -> Vec<GroupId> {
        let mut v: Vec<GroupId> = self.effective.keys().copied().collect();
        v.sort();
        v
    }

    pub fn visible_set(&self) -> HashSet<GroupId> {
        self.effective.keys().copied().collect()
    }
}

/// `root` and every group below it, from an organization's nodes.
pub fn subtree(nodes: &[GroupNode], root: GroupId) -> Vec<GroupId> {
    let mut children: HashMap<GroupId, Vec<GroupId>> = HashMap::new();
    for n in nodes {
        if let Some(p) = n.parent {
            children.entry(p).or_default().push(n.id);
        }
    }
    let mut out = vec![];
    let mut seen = HashSet::new();
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        out.push(id);
        if let Some(kids) = children.get(&id) {
            stack.extend(kids.iter().copied());
        }
    }
    out.sort();
    out
}

// ---------------------------------------------------------------- validation

/// Longest name of a group, vehicle or device.
pub const MAX_NAME_CHARS: usize = 120;
/// Longest description of a group.
pub const MAX_DESCRIPTION_CHARS: usize = 2_000;
/// Longest free-text search.
pub const MAX_SEARCH_CHARS: usize = 100;
/// Deepest group tree (the root is level 1).
pub const MAX_GROUP_DEPTH: usize = 32;

/// A trimmed, non-empty, bounded text without control characters.
pub fn check_text(field: &str, value: &str, max: usize) -> Result<String, DomainError> {
    let t = value.trim();
    if t.is_empty() {
        return Err(DomainError::invalid(
            field,
            format!("{field} must not be empty"),
        ));
    }
    if t.chars().count() > max {
        return Err(DomainError::invalid(
            field,
            format!("{field} may be at most {max} characters"),
        ));
    }
    if t.chars().any(char::is_control) && field != "description" {
        return Err(DomainError::invalid(
            field,
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(t.to_owned())
}

/// An optional text: `None` leaves it, `Some("")` clears it, anything else is checked.
pub fn check_optional(
    field: &str,
    value: Option<&str>,
    max: usize,
) -> Result<Option<Option<String>>, DomainError> {
    match value {
        None => Ok(None),
        Some(v) if v.trim().is_empty() => Ok(Some(None)),
        Some(v) => Ok(Some(Some(check_text(field, v, max)?))),
    }
}

/// A VIN (ISO 3779): 17 letters and digits, never I, O or Q. Stored upper-case.
pub fn check_vin(vin: &str) -> Result<String, DomainError> {
    let v = vin.trim().to_ascii_uppercase();
    let ok = v.len() == 17
        && v.bytes()
            .all(|b| b.is_ascii_digit() || (b.is_ascii_uppercase() && !b"IOQ".contains(&b)));
    if !ok {
        return Err(DomainError::invalid(
            "vin",
            format!(
                "'{}' is not a VIN: a VIN has 17 letters and digits, never I, O or Q",
                vin.trim().chars().take(40).collect::<String>()
            ),
        ));
    }
    Ok(v)
}

/// A model year between the first cars and next year's models.
pub fn check_year(year: i32, now: &Timestamp) -> Result<i32, DomainError> {
    use chrono::Datelike;
    let max = now.year() + 1;
    if !(1886..=max).contains(&year) {
        return Err(DomainError::invalid(
            "year",
            format!("year must be between 1886 and {max} (got {year})"),
        ));
    }
    Ok(year)
}

/// A free-text search: trimmed, bounded; empty means no filter.
pub fn check_search(text: Option<&str>) -> Result<Option<String>, DomainError> {
    match text.map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) if t.chars().count() > MAX_SEARCH_CHARS => Err(DomainError::invalid(
            "text",
            format!("text may be at most {MAX_SEARCH_CHARS} characters"),
        )),
        Some(t) => Ok(Some(t.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(group: i64, role: Role) -> RoleGrant {
        RoleGrant {
            account: AccountId::new_random(),
            group: GroupId(group),
            organization: OrganizationId(1),
            role,
        }
    }

    fn tree() -> Vec<GroupNode> {
        // 1 ─┬─ 2 ── 4
        //    └─ 3
        [(1, None), (2, Some(1)), (3, Some(1)), (4, Some(2))]
            .map(|(id, parent)| GroupNode {
                id: GroupId(id),
                parent: parent.map(GroupId),
            })
            .to_vec()
    }

    #[test]
    fn roles_flow_down_and_the_strongest_wins() {
        let a = Access::compute(&[grant(2, Role::Viewer), grant(4, Role::Admin)], &tree());
        assert_eq!(a.role_on(GroupId(1)), None);
        assert_eq!(a.role_on(GroupId(2)), Some(Role::Viewer));
        assert_eq!(a.role_on(GroupId(4)), Some(Role::Admin));
        assert_eq!(a.role_on(GroupId(3)), None);
        assert!(a.can(GroupId(4), Role::Manager));
        assert!(!a.can(GroupId(2), Role::Manager));
        assert_eq!(a.visible_groups(), vec![GroupId(2), GroupId(4)]);
        let root = Access::compute(&[grant(1, Role::Manager)], &tree());
        assert_eq!(root.visible_groups().len(), 4);
    }

    #[test]
    fn a_cycle_in_the_tree_never_loops() {
        let cyclic = [(1, Some(2)), (2, Some(1))].map(|(id, parent)| GroupNode {
            id: GroupId(id),
            parent: parent.map(GroupId),
        });
        let a = Access::compute(&[grant(1, Role::Admin)], &cyclic);
        assert_eq!(a.visible_groups(), vec![GroupId(1), GroupId(2)]);
        assert_eq!(subtree(&cyclic, GroupId(2)).len(), 2);
    }

    #[test]
    fn subtree_holds_the_root_and_its_descendants() {
        assert_eq!(subtree(&tree(), GroupId(2)), vec![GroupId(2), GroupId(4)]);
        assert_eq!(subtree(&tree(), GroupId(3)), vec![GroupId(3)]);
    }

    #[test]
    fn ids_parse_from_decimal_strings_only() {
        assert_eq!(GroupId::parse("group_id", " 42 ").unwrap(), GroupId(42));
        for bad in ["", "0", "-1", "1e3", "abc", "99999999999999999999", "+4"] {
            let e = GroupId::parse("group_id", bad).unwrap_err();
            assert_eq!(e.code(), "BAD_USER_INPUT", "{bad}");
        }
    }

    #[test]
    fn vins_and_years_are_checked() {
        assert_eq!(check_vin("wvwzzz1jzxw000001").unwrap(), "WVWZZZ1JZXW000001");
        assert!(check_vin("WVWZZZ1JZXW00000I").is_err());
        assert!(check_vin("SHORT").is_err());
        let now = crate::time::now_ms();
        assert!(check_year(2020, &now).is_ok());
        assert!(check_year(1700, &now).is_err());
    }

    #[test]
    fn roles_and_fuel_types_parse() {
        assert_eq!(Role::parse("Admin").unwrap(), Role::Admin);
        assert!(Role::parse("owner").is_err());
        assert_eq!(
            FuelType::parse("plugin-hybrid").unwrap(),
            FuelType::PluginHybrid
        );
        assert!(FuelType::parse("coal").is_err());
    }
}
