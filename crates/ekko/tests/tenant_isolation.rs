//! Tenant isolation, property style: for many seeds, a random world of organizations, group
//! trees, roles (invitations accepted by code, grants across organizations, revocations,
//! moves), devices, vehicles, installations and tracks is built through the domain, and the
//! rights of every account are computed *here*, independently of the domain: a role on a
//! group applies to the group and every group below it, the strongest role wins, and
//! viewer < manager < admin (see `Role`'s rights table).
//!
//! Every account is then checked against that model:
//! - reads return exactly what its roles show (lists paged to the end, single things), and
//!   anything else is `NOT_FOUND`, worded exactly like a thing that does not exist;
//! - mutations outside its rights are `NOT_FOUND` (invisible) or `FORBIDDEN` (visible, role
//!   too weak), devices and vehicles never move to another organization, and nothing changes
//!   (the store is compared before and after, and nothing is published on the bus);
//! - subscriptions are refused for any invisible device and deliver exactly the visible ones,
//!   and stop delivering a device the account no longer sees (role revoked, group moved away);
//! - an integration of the account may push only for the devices the account manages;
//! - an organization never loses the last admin of its root group.
//!
//! Reproduce one world with `TENANT_SEED=<seed> cargo test --release -p ekko --test
//! tenant_isolation`; the world is described in the output of a failing test.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ekko_bus::InProcessBus;
use ekko_core::device::Device;
use ekko_core::fields::{Field, FieldValue};
use ekko_core::fleet::{
    Group, GroupId, Installation, ListFilter, OrganizationId, Role, RoleGrant, Vehicle, VehicleId,
};
use ekko_core::ids::imei_with_check_digit;
use ekko_core::paging::Page;
use ekko_core::ports::{Bus, BusItem, BusStream};
use ekko_core::service::fleet::{InviteOutcome, ListArgs, VehicleArgs};
use ekko_core::service::history::{PageArgs, TimeWindow};
use ekko_core::time::from_unix_ms;
use ekko_core::track::{Coordinates, TrackRecord};
use ekko_core::{AccountId, Caller, DomainError, Ekko, Imei};
use futures::{FutureExt, StreamExt};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

const PASSWORD: &str = "correct horse battery staple";
/// Worlds per test (each test builds the same worlds, so a seed names one world everywhere).
const SEEDS: u64 = 24;
/// 2026-01-01T00:00:00Z
const T0: i64 = 1_767_225_600_000;
const ROLES: [Role; 3] = [Role::Viewer, Role::Manager, Role::Admin];

// ---------------------------------------------------------------- the model

struct Account {
    id: AccountId,
    email: String,
    caller: Caller,
    /// Index of the organization it belongs to (founded, or joined by invitation).
    home: usize,
}

struct Org {
    id: OrganizationId,
    founder: usize,
    root: GroupId,
}

struct GroupModel {
    org: usize,
    parent: Option<GroupId>,
    name: String,
}

struct DeviceModel {
    group: GroupId,
    tracks: u64,
}

struct VehicleModel {
    group: GroupId,
}

/// A world built through the domain, and what the test believes it holds.
struct World {
    seed: u64,
    _dir: tempfile::TempDir,
    ekko: Ekko,
    store: ekko_store::sqlite::SqliteStore,
    /// The bus the domain publishes on: raw subscriptions to it see everything published.
    bus: Arc<InProcessBus>,
    accounts: Vec<Account>,
    orgs: Vec<Org>,
    groups: BTreeMap<GroupId, GroupModel>,
    /// Roles held directly: (account index, group) → role.
    grants: BTreeMap<(usize, GroupId), Role>,
    devices: BTreeMap<String, DeviceModel>,
    vehicles: BTreeMap<VehicleId, VehicleModel>,
    /// Every installation ever made (open or closed): (IMEI, vehicle).
    installations: Vec<(String, VehicleId)>,
    /// Things that existed and were deleted: they must be invisible to everyone.
    deleted_groups: Vec<GroupId>,
    deleted_devices: Vec<String>,
    deleted_vehicles: Vec<VehicleId>,
    next_imei: u64,
    next_name: u64,
    log: Vec<String>,
}

impl World {
    fn parent(&self, g: GroupId) -> Option<GroupId> {
        self.groups.get(&g).and_then(|m| m.parent)
    }

    /// Is `g` `root` or below it? (Walks up from `g`: independent of the domain's tree code.)
    fn within(&self, g: GroupId, root: GroupId) -> bool {
        let mut at = Some(g);
        let mut steps = 0;
        while let Some(x) = at {
            if x == root {
                return true;
            }
            at = self.parent(x);
            steps += 1;
            assert!(
                steps < 100,
                "seed {}: the model's tree has a cycle",
                self.seed
            );
        }
        false
    }

    fn subtree(&self, root: GroupId) -> BTreeSet<GroupId> {
        self.groups
            .keys()
            .copied()
            .filter(|g| self.within(*g, root))
            .collect()
    }

    fn children(&self, g: GroupId) -> BTreeSet<GroupId> {
        self.groups
            .iter()
            .filter(|(_, m)| m.parent == Some(g))
            .map(|(id, _)| *id)
            .collect()
    }

    /// The account's role on every group it may see: its roles pushed down, strongest wins.
    fn effective(&self, a: usize) -> BTreeMap<GroupId, Role> {
        let mut out: BTreeMap<GroupId, Role> = BTreeMap::new();
        for ((holder, held_on), role) in &self.grants {
            if *holder != a {
                continue;
            }
            for g in self.subtree(*held_on) {
                let slot = out.entry(g).or_insert(*role);
                *slot = (*slot).max(*role);
            }
        }
        out
    }

    fn groups_of_org(&self, org: usize) -> Vec<GroupId> {
        self.groups
            .iter()
            .filter(|(_, m)| m.org == org)
            .map(|(id, _)| *id)
            .collect()
    }

    fn org_of(&self, g: GroupId) -> usize {
        self.groups[&g].org
    }

    /// Accounts holding at least `needed` on every one of `groups`.
    fn holders(&self, groups: &[GroupId], needed: Role) -> Vec<usize> {
        (0..self.accounts.len())
            .filter(|a| {
                let eff = self.effective(*a);
                groups
                    .iter()
                    .all(|g| eff.get(g).is_some_and(|r| *r >= needed))
            })
            .collect()
    }

    fn caller(&self, a: usize) -> Option<&Caller> {
        Some(&self.accounts[a].caller)
    }

    fn new_imei(&mut self) -> String {
        self.next_imei += 1;
        let first14 = format!("35{:06}{:06}", self.seed % 1_000_000, self.next_imei);
        imei_with_check_digit(&first14)
            .expect("14 digits")
            .as_str()
            .to_owned()
    }

    fn new_name(&mut self, what: &str) -> String {
        self.next_name += 1;
        format!("{what}-{}", self.next_name)
    }

    fn who(&self, a: usize) -> String {
        format!("seed {} account #{a} {}", self.seed, self.accounts[a].email)
    }

    fn describe(&self) -> String {
        let mut s = format!("== world of seed {} ==\n", self.seed);
        for (i, o) in self.orgs.iter().enumerate() {
            s += &format!(
                "org #{i} ({}) founder #{} root {}\n",
                o.id, o.founder, o.root
            );
        }
        for (i, a) in self.accounts.iter().enumerate() {
            s += &format!("account #{i} {} {} home org #{}\n", a.email, a.id, a.home);
        }
        for (id, g) in &self.groups {
            s += &format!(
                "group {id} '{}' org #{} parent {:?}\n",
                g.name,
                g.org,
                g.parent.map(|p| p.0)
            );
        }
        for ((a, g), r) in &self.grants {
            s += &format!("grant #{a} {r} on {g}\n");
        }
        for (imei, d) in &self.devices {
            s += &format!("device {imei} in {} ({} tracks)\n", d.group, d.tracks);
        }
        for (id, v) in &self.vehicles {
            s += &format!("vehicle {id} in {}\n", v.group);
        }
        for (imei, v) in &self.installations {
            s += &format!("installed {imei} in vehicle {v}\n");
        }
        s += &format!(
            "deleted: groups {:?} devices {:?} vehicles {:?}\n",
            self.deleted_groups, self.deleted_devices, self.deleted_vehicles
        );
        s += "build log:\n";
        for l in &self.log {
            s += &format!("  {l}\n");
        }
        s
    }
}

// ---------------------------------------------------------------- building a world

fn ok<T>(what: &str, r: Result<T, DomainError>) -> T {
    r.unwrap_or_else(|e| panic!("building the world: {what}: {} {e}", e.code()))
}

/// Signs an account up: it founds an organization of its own, admin of its root group.
async fn register(w: &mut World, email: &str) -> usize {
    let full_name = format!("Person {}", w.accounts.len());
    let account = ok(
        &format!("register {email}"),
        ekko_connect::accounts::register(&w.ekko, email, PASSWORD, &full_name).await,
    );
    let (caller, root) = ok("act_as", w.ekko.act_as(email).await);
    assert_eq!(caller.account, account.id);
    let (a, o) = (w.accounts.len(), w.orgs.len());
    assert!(
        w.orgs.iter().all(|x| x.id != account.organization),
        "seed {}: a new account founds a new organization",
        w.seed
    );
    w.accounts.push(Account {
        id: account.id,
        email: email.to_owned(),
        caller,
        home: o,
    });
    w.orgs.push(Org {
        id: account.organization,
        founder: a,
        root,
    });
    w.groups.insert(
        root,
        GroupModel {
            org: o,
            parent: None,
            name: full_name,
        },
    );
    w.grants.insert((a, root), Role::Admin);
    w.log
        .push(format!("{email} (#{a}) signed up: org #{o}, root {root}"));
    a
}

async fn build(seed: u64) -> World {
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let (_, store) = ekko::server::open_domain(dir.path()).await.unwrap();
    // The domain as `open_domain` wires it, with a bus the test can listen to directly.
    let bus = Arc::new(InProcessBus::default());
    let ekko = Ekko::new(Arc::new(store.clone()), bus.clone());
    let mut w = World {
        seed,
        _dir: dir,
        ekko,
        store,
        bus,
        accounts: vec![],
        orgs: vec![],
        groups: BTreeMap::new(),
        grants: BTreeMap::new(),
        devices: BTreeMap::new(),
        vehicles: BTreeMap::new(),
        installations: vec![],
        deleted_groups: vec![],
        deleted_devices: vec![],
        deleted_vehicles: vec![],
        next_imei: 0,
        next_name: 0,
        log: vec![],
    };

    // Organizations: each founder signs up and is admin of its new root group.
    let n_orgs = rng.random_range(2..=3);
    for o in 0..n_orgs {
        register(&mut w, &format!("founder{o}@org{o}.test")).await;
    }

    // Group trees, created by an admin of the parent.
    for o in 0..n_orgs {
        for _ in 0..rng.random_range(1..=5) {
            let parent = *w.groups_of_org(o).choose(&mut rng).unwrap();
            let actor = *w.holders(&[parent], Role::Admin).choose(&mut rng).unwrap();
            let name = w.new_name(&format!("o{o}"));
            let g = ok(
                "create_group",
                w.ekko
                    .create_group(w.caller(actor), &parent.to_string(), &name, None)
                    .await,
            );
            w.groups.insert(
                g.id,
                GroupModel {
                    org: o,
                    parent: Some(parent),
                    name: name.clone(),
                },
            );
            w.log
                .push(format!("#{actor} created group {} under {parent}", g.id));
        }
    }

    // Members: invited before they sign up. Signing up founds an organization of their own;
    // the invited role is theirs only once they present the invitation's code.
    for m in 0..rng.random_range(1..=3) {
        let o = rng.random_range(0..n_orgs);
        let g = *w.groups_of_org(o).choose(&mut rng).unwrap();
        let role = *ROLES.choose(&mut rng).unwrap();
        let inviter = *w.holders(&[g], Role::Admin).choose(&mut rng).unwrap();
        let email = format!("member{m}@org{o}.test");
        let out = ok(
            "invite (pending)",
            w.ekko
                .invite(w.caller(inviter), &g.to_string(), &email, role.as_str())
                .await,
        );
        let InviteOutcome::Pending { code, .. } = out else {
            panic!("seed {seed}: an email without an account waits: {out:?}");
        };
        let a = register(&mut w, &email).await;
        let before = ok(
            "account_roles",
            w.ekko.account_roles(w.caller(a), w.accounts[a].id).await,
        );
        assert_eq!(
            before.len(),
            1,
            "seed {seed}: a pending invitation gives nothing before its code is presented"
        );
        let wrong = w.ekko.accept_invitation(w.caller(a), "inv_0000").await;
        assert_eq!(wrong.map_err(|e| e.code()).unwrap_err(), "NOT_FOUND");
        let grant = ok(
            "accept_invitation",
            w.ekko.accept_invitation(w.caller(a), &code).await,
        );
        assert_eq!((grant.group, grant.role), (g, role));
        let again = w.ekko.accept_invitation(w.caller(a), &code).await;
        assert_eq!(
            again.map_err(|e| e.code()).unwrap_err(),
            "NOT_FOUND",
            "seed {seed}: an invitation's code works once"
        );
        w.grants.insert((a, g), role);
        w.log.push(format!(
            "#{inviter} invited {email} as {role} on {g}; #{a} signed up and accepted"
        ));
    }

    // Roles granted to existing accounts, of this or another organization.
    for _ in 0..rng.random_range(1..=5) {
        let t = rng.random_range(0..w.accounts.len());
        let all: Vec<GroupId> = w.groups.keys().copied().collect();
        let g = *all.choose(&mut rng).unwrap();
        let o = w.org_of(g);
        if w.orgs[o].founder == t && w.orgs[o].root == g {
            continue; // a founder keeps the admin role of its root group
        }
        let role = *ROLES.choose(&mut rng).unwrap();
        let inviter = *w.holders(&[g], Role::Admin).choose(&mut rng).unwrap();
        let email = w.accounts[t].email.clone();
        let out = ok(
            "invite (existing)",
            w.ekko
                .invite(w.caller(inviter), &g.to_string(), &email, role.as_str())
                .await,
        );
        match out {
            InviteOutcome::Added(acc) => assert_eq!(acc.id, w.accounts[t].id),
            other => panic!("seed {seed}: an existing account is added at once: {other:?}"),
        }
        w.grants.insert((t, g), role);
        w.log.push(format!("#{inviter} granted #{t} {role} on {g}"));
    }

    // Devices, registered by a manager of their group, and by the admin CLI into a root group.
    for o in 0..n_orgs {
        for _ in 0..rng.random_range(1..=4) {
            let g = *w.groups_of_org(o).choose(&mut rng).unwrap();
            let actor = *w.holders(&[g], Role::Manager).choose(&mut rng).unwrap();
            let imei = w.new_imei();
            let name = w.new_name("dev");
            let d = ok(
                "add_device",
                w.ekko
                    .add_device(w.caller(actor), &imei, &g.to_string(), Some(&name), None)
                    .await,
            );
            assert_eq!((d.group, d.organization), (g, w.orgs[o].id));
            w.devices.insert(
                imei.clone(),
                DeviceModel {
                    group: g,
                    tracks: 0,
                },
            );
            w.log.push(format!("#{actor} added device {imei} in {g}"));
        }
    }
    if rng.random_bool(0.5) {
        let a = rng.random_range(0..w.accounts.len());
        let imei = w.new_imei();
        let d = ok(
            "create_device",
            w.ekko.create_device(&imei, &w.accounts[a].email).await,
        );
        let root = w.orgs[w.accounts[a].home].root;
        assert_eq!(d.group, root, "the admin CLI registers into the root group");
        w.devices.insert(
            imei.clone(),
            DeviceModel {
                group: root,
                tracks: 0,
            },
        );
        w.log
            .push(format!("CLI created device {imei} for #{a} (root {root})"));
    }

    // Vehicles.
    for o in 0..n_orgs {
        for _ in 0..rng.random_range(0..=3) {
            let g = *w.groups_of_org(o).choose(&mut rng).unwrap();
            let actor = *w.holders(&[g], Role::Manager).choose(&mut rng).unwrap();
            let name = w.new_name("veh");
            let v = ok(
                "create_vehicle",
                w.ekko
                    .create_vehicle(
                        w.caller(actor),
                        &g.to_string(),
                        &VehicleArgs {
                            name: Some(&name),
                            ..Default::default()
                        },
                    )
                    .await,
            );
            assert_eq!((v.group, v.organization), (g, w.orgs[o].id));
            w.vehicles.insert(v.id, VehicleModel { group: g });
            w.log
                .push(format!("#{actor} created vehicle {} in {g}", v.id));
        }
    }

    // Installations (some closed again).
    let imeis: Vec<String> = w.devices.keys().cloned().collect();
    for imei in &imeis {
        if !rng.random_bool(0.5) {
            continue;
        }
        let dg = w.devices[imei].group;
        let same_org: Vec<VehicleId> = w
            .vehicles
            .iter()
            .filter(|(_, v)| w.org_of(v.group) == w.org_of(dg))
            .map(|(id, _)| *id)
            .collect();
        let Some(&v) = same_org.choose(&mut rng) else {
            continue;
        };
        let vg = w.vehicles[&v].group;
        let actor = *w
            .holders(&[dg, vg], Role::Manager)
            .choose(&mut rng)
            .unwrap();
        ok(
            "attach_device",
            w.ekko
                .attach_device(w.caller(actor), imei, &v.to_string())
                .await,
        );
        w.installations.push((imei.clone(), v));
        w.log.push(format!("#{actor} installed {imei} in {v}"));
        if rng.random_bool(0.3) {
            ok(
                "detach_device",
                w.ekko.detach_device(w.caller(actor), imei).await,
            );
            w.log.push(format!("#{actor} detached {imei}"));
        }
    }

    // Moves: a group to another parent, a device and a vehicle to another group; a
    // revocation.
    if rng.random_bool(0.6) {
        move_a_group(&mut w, &mut rng).await;
    }
    if rng.random_bool(0.6) {
        move_a_device(&mut w, &mut rng).await;
    }
    move_a_vehicle(&mut w, &mut rng).await;
    if rng.random_bool(0.6) {
        revoke_a_role(&mut w, &mut rng).await;
    }

    // Things that existed and are gone: a group with a role on it, a device, a vehicle.
    if rng.random_bool(0.5) {
        let o = rng.random_range(0..n_orgs);
        let parent = *w.groups_of_org(o).choose(&mut rng).unwrap();
        let founder = w.orgs[o].founder;
        let g = ok(
            "create_group (to delete)",
            w.ekko
                .create_group(w.caller(founder), &parent.to_string(), "doomed", None)
                .await,
        )
        .id;
        let t = rng.random_range(0..w.accounts.len());
        let email = w.accounts[t].email.clone();
        ok(
            "invite (to a doomed group)",
            w.ekko
                .invite(w.caller(founder), &g.to_string(), &email, "admin")
                .await,
        );
        ok(
            "delete_group",
            w.ekko.delete_group(w.caller(founder), &g.to_string()).await,
        );
        w.deleted_groups.push(g);
        w.log.push(format!(
            "#{founder} created group {g}, made #{t} admin there, deleted it"
        ));
    }
    if rng.random_bool(0.5) {
        let o = rng.random_range(0..n_orgs);
        let g = *w.groups_of_org(o).choose(&mut rng).unwrap();
        let founder = w.orgs[o].founder;
        let imei = w.new_imei();
        ok(
            "add_device (to remove)",
            w.ekko
                .add_device(w.caller(founder), &imei, &g.to_string(), None, None)
                .await,
        );
        ok(
            "remove_device",
            w.ekko.remove_device(w.caller(founder), &imei).await,
        );
        w.log.push(format!("#{founder} added then removed {imei}"));
        w.deleted_devices.push(imei);
    }
    if rng.random_bool(0.5) {
        let o = rng.random_range(0..n_orgs);
        let g = *w.groups_of_org(o).choose(&mut rng).unwrap();
        let founder = w.orgs[o].founder;
        let v = ok(
            "create_vehicle (to delete)",
            w.ekko
                .create_vehicle(w.caller(founder), &g.to_string(), &VehicleArgs::default())
                .await,
        )
        .id;
        ok(
            "delete_vehicle",
            w.ekko
                .delete_vehicle(w.caller(founder), &v.to_string())
                .await,
        );
        w.log
            .push(format!("#{founder} created then deleted vehicle {v}"));
        w.deleted_vehicles.push(v);
    }

    // Tracks.
    let mut batch = vec![];
    for imei in &imeis {
        if rng.random_bool(0.6) {
            let n = rng.random_range(1..=3);
            for k in 0..n {
                batch.push(track(imei, k));
            }
            w.devices.get_mut(imei).unwrap().tracks += n;
        }
    }
    if !batch.is_empty() {
        ok("ingest_tracks", w.ekko.ingest_tracks(batch).await);
    }
    eprintln!("{}", w.describe());
    w
}

/// An admin moves a group of a random organization under another group of it.
async fn move_a_group(w: &mut World, rng: &mut StdRng) {
    let o = rng.random_range(0..w.orgs.len());
    let movable: Vec<GroupId> = w
        .groups_of_org(o)
        .into_iter()
        .filter(|g| w.parent(*g).is_some())
        .collect();
    let Some(&g) = movable.choose(rng) else {
        return;
    };
    let targets: Vec<GroupId> = w
        .groups_of_org(o)
        .into_iter()
        .filter(|p| !w.within(*p, g) && Some(*p) != w.parent(g))
        .collect();
    let Some(&p) = targets.choose(rng) else {
        return;
    };
    let actor = *w.holders(&[g, p], Role::Admin).choose(rng).unwrap();
    ok(
        "update_group (move)",
        w.ekko
            .update_group(
                w.caller(actor),
                &g.to_string(),
                None,
                None,
                Some(&p.to_string()),
            )
            .await,
    );
    w.groups.get_mut(&g).unwrap().parent = Some(p);
    w.log.push(format!("#{actor} moved group {g} under {p}"));
}

/// A manager of both groups moves a device to another group of its organization.
async fn move_a_device(w: &mut World, rng: &mut StdRng) {
    let imeis: Vec<String> = w.devices.keys().cloned().collect();
    let Some(imei) = imeis.choose(rng) else {
        return;
    };
    let from = w.devices[imei].group;
    let to = *w.groups_of_org(w.org_of(from)).choose(rng).unwrap();
    if to == from {
        return;
    }
    let actor = *w.holders(&[from, to], Role::Manager).choose(rng).unwrap();
    ok(
        "update_device (move)",
        w.ekko
            .update_device(
                w.caller(actor),
                imei,
                None,
                None,
                None,
                Some(&to.to_string()),
            )
            .await,
    );
    w.devices.get_mut(imei).unwrap().group = to;
    w.log.push(format!("#{actor} moved device {imei} to {to}"));
}

/// A manager of both groups moves a vehicle to another group of its organization.
async fn move_a_vehicle(w: &mut World, rng: &mut StdRng) {
    let vids: Vec<VehicleId> = w.vehicles.keys().copied().collect();
    let Some(&v) = vids.choose(rng) else {
        return;
    };
    let from = w.vehicles[&v].group;
    let to = *w.groups_of_org(w.org_of(from)).choose(rng).unwrap();
    if to == from {
        return;
    }
    let actor = *w.holders(&[from, to], Role::Manager).choose(rng).unwrap();
    ok(
        "update_vehicle (move)",
        w.ekko
            .update_vehicle(
                w.caller(actor),
                &v.to_string(),
                Some(&to.to_string()),
                &VehicleArgs::default(),
            )
            .await,
    );
    w.vehicles.get_mut(&v).unwrap().group = to;
    w.log.push(format!("#{actor} moved vehicle {v} to {to}"));
}

/// An admin of the group (possibly the holder itself) revokes a role held on it; a founder
/// keeps its root group's admin role.
async fn revoke_a_role(w: &mut World, rng: &mut StdRng) {
    let revocable: Vec<(usize, GroupId)> = w
        .grants
        .keys()
        .copied()
        .filter(|(a, g)| {
            let org = &w.orgs[w.org_of(*g)];
            !(org.founder == *a && org.root == *g)
        })
        .collect();
    let Some(&(t, g)) = revocable.choose(rng) else {
        return;
    };
    let actor = *w.holders(&[g], Role::Admin).choose(rng).unwrap();
    let removed = ok(
        "revoke_role",
        w.ekko
            .revoke_role(
                w.caller(actor),
                &g.to_string(),
                &w.accounts[t].id.to_string(),
            )
            .await,
    );
    assert!(removed, "seed {}: revoking a held role removes it", w.seed);
    w.grants.remove(&(t, g));
    w.log.push(format!("#{actor} revoked #{t}'s role on {g}"));
}

fn track(imei: &str, minute: u64) -> TrackRecord {
    TrackRecord {
        imei: Imei::parse(imei).unwrap(),
        recorded_at: from_unix_ms(T0 + minute as i64 * 60_000).unwrap(),
        coordinates: Some(Coordinates::new(48.85, 2.29 + minute as f64 / 1000.0).unwrap()),
        fields: vec![Field::new("GPS_SPEED", FieldValue::Int(minute as i64))],
    }
}

/// The seeds to run: `TENANT_SEED` alone when set, else `0..SEEDS`.
fn seeds() -> Vec<u64> {
    match std::env::var("TENANT_SEED") {
        Ok(s) => vec![s.trim().parse().expect("TENANT_SEED is a number")],
        Err(_) => (0..SEEDS).collect(),
    }
}

// ---------------------------------------------------------------- checking

/// Violations found, gathered so that one run reports every broken property, not the first.
#[derive(Default)]
struct Violations(Vec<String>);

impl Violations {
    fn check(&mut self, cond: bool, msg: impl FnOnce() -> String) {
        if !cond {
            self.0.push(msg());
        }
    }

    fn eq<T: PartialEq + Debug>(&mut self, what: impl FnOnce() -> String, actual: T, expected: T) {
        if actual != expected {
            self.0.push(format!(
                "{}\n    expected {expected:?}\n    actual   {actual:?}",
                what()
            ));
        }
    }

    /// `r` failed with `code` (and carries no data).
    fn err<T: Debug>(
        &mut self,
        what: impl FnOnce() -> String,
        r: &Result<T, DomainError>,
        code: &str,
    ) {
        match r {
            Err(e) if e.code() == code => {}
            Err(e) => self.0.push(format!(
                "{}\n    expected {code}\n    actual   {} ({e})",
                what(),
                e.code()
            )),
            Ok(v) => self.0.push(format!(
                "{}\n    expected {code}\n    actual   Ok({})",
                what(),
                truncate(&format!("{v:?}"))
            )),
        }
    }

    fn finish(self, test: &str) {
        if self.0.is_empty() {
            return;
        }
        let shown: Vec<&str> = self.0.iter().take(40).map(String::as_str).collect();
        panic!(
            "{test}: {} violation(s); the first {}:\n{}",
            self.0.len(),
            shown.len(),
            shown.join("\n")
        );
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(300).collect()
}

/// An error message with `id` and every run of digits blotted out: an invisible thing's
/// `NOT_FOUND` must read exactly like a missing one's.
fn shape(e: &DomainError, id: &str) -> String {
    let msg = e.to_string().replace(id, "<id>");
    let mut out = String::new();
    let mut in_digits = false;
    for c in msg.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    format!("{}: {out}", e.code())
}

/// What the domain must answer when `needed` is asked of an account holding `had` (`None`:
/// it sees nothing there): `None` when allowed.
fn denial(had: Option<Role>, needed: Role) -> Option<&'static str> {
    match had {
        None => Some("NOT_FOUND"),
        Some(r) if r < needed => Some("FORBIDDEN"),
        Some(_) => None,
    }
}

/// Every item of a paged list, following `next` to the end; checks `count` on the way.
async fn all_pages<T, F, Fut>(
    v: &mut Violations,
    what: &str,
    mut fetch: F,
) -> Result<Vec<T>, DomainError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<Page<T>, DomainError>>,
{
    let mut out = vec![];
    let mut next = None;
    let mut count = None;
    for _ in 0..1000 {
        let page = fetch(next.take()).await?;
        count = count.or(page.count);
        out.extend(page.list);
        match page.next {
            Some(n) => next = Some(n),
            None => {
                if let Some(c) = count {
                    v.eq(|| format!("{what}: count"), c, out.len() as u64);
                }
                return Ok(out);
            }
        }
    }
    panic!("{what}: more than 1000 pages");
}

fn page_args(page_id: &Option<String>, size: i64) -> PageArgs<'_> {
    PageArgs {
        page_size: Some(size),
        page_id: page_id.as_deref(),
    }
}

async fn list_groups(
    w: &World,
    v: &mut Violations,
    a: usize,
    under: Option<GroupId>,
    size: i64,
) -> Result<BTreeSet<GroupId>, DomainError> {
    let g = under.map(|g| g.to_string());
    let args = ListArgs {
        group_id: g.as_deref(),
        ..Default::default()
    };
    let list = all_pages(
        v,
        &format!("{}: groups(group_id {g:?})", w.who(a)),
        |p| async move { w.ekko.groups(w.caller(a), args, page_args(&p, size)).await },
    )
    .await?;
    Ok(list.into_iter().map(|x: Group| x.id).collect())
}

async fn list_devices(
    w: &World,
    v: &mut Violations,
    a: usize,
    under: Option<GroupId>,
    size: i64,
) -> Result<BTreeSet<String>, DomainError> {
    let g = under.map(|g| g.to_string());
    let args = ListArgs {
        group_id: g.as_deref(),
        ..Default::default()
    };
    let list = all_pages(
        v,
        &format!("{}: devices(group_id {g:?})", w.who(a)),
        |p| async move { w.ekko.devices(w.caller(a), args, page_args(&p, size)).await },
    )
    .await?;
    Ok(list
        .into_iter()
        .map(|d: Device| d.imei.as_str().to_owned())
        .collect())
}

async fn list_vehicles(
    w: &World,
    v: &mut Violations,
    a: usize,
    under: Option<GroupId>,
    size: i64,
) -> Result<BTreeSet<VehicleId>, DomainError> {
    let g = under.map(|g| g.to_string());
    let args = ListArgs {
        group_id: g.as_deref(),
        ..Default::default()
    };
    let list = all_pages(
        v,
        &format!("{}: vehicles(group_id {g:?})", w.who(a)),
        |p| async move {
            w.ekko
                .vehicles(w.caller(a), args, page_args(&p, size))
                .await
        },
    )
    .await?;
    Ok(list.into_iter().map(|x: Vehicle| x.id).collect())
}

async fn list_accounts(
    w: &World,
    v: &mut Violations,
    a: usize,
    under: Option<GroupId>,
    size: i64,
) -> Result<BTreeSet<AccountId>, DomainError> {
    let g = under.map(|g| g.to_string());
    let args = ListArgs {
        group_id: g.as_deref(),
        ..Default::default()
    };
    let list = all_pages(
        v,
        &format!("{}: accounts(group_id {g:?})", w.who(a)),
        |p| async move {
            w.ekko
                .accounts(w.caller(a), args, page_args(&p, size))
                .await
        },
    )
    .await?;
    Ok(list.into_iter().map(|x| x.id).collect())
}

/// What the model says `a` sees below the groups in `scope`.
struct Expected {
    groups: BTreeSet<GroupId>,
    devices: BTreeSet<String>,
    vehicles: BTreeSet<VehicleId>,
    accounts: BTreeSet<AccountId>,
}

fn expected_in(w: &World, scope: &BTreeSet<GroupId>) -> Expected {
    Expected {
        groups: scope.clone(),
        devices: w
            .devices
            .iter()
            .filter(|(_, d)| scope.contains(&d.group))
            .map(|(i, _)| i.clone())
            .collect(),
        vehicles: w
            .vehicles
            .iter()
            .filter(|(_, x)| scope.contains(&x.group))
            .map(|(i, _)| *i)
            .collect(),
        accounts: w
            .grants
            .keys()
            .filter(|(_, g)| scope.contains(g))
            .map(|(a, _)| w.accounts[*a].id)
            .collect(),
    }
}

/// The four lists, unfiltered or below `under`, against the model.
async fn check_lists(
    w: &World,
    v: &mut Violations,
    rng: &mut StdRng,
    a: usize,
    under: Option<GroupId>,
) {
    let eff = w.effective(a);
    let visible: BTreeSet<GroupId> = eff.keys().copied().collect();
    let ctx = |list: &str| format!("{}: {list}(group_id {:?})", w.who(a), under.map(|g| g.0));
    let size = rng.random_range(1..=3);
    let (g, d, x, acc) = (
        list_groups(w, v, a, under, size).await,
        list_devices(w, v, a, under, size).await,
        list_vehicles(w, v, a, under, size).await,
        list_accounts(w, v, a, under, size).await,
    );
    let scope = match under {
        Some(u) if !visible.contains(&u) => {
            v.err(|| ctx("groups"), &g, "NOT_FOUND");
            v.err(|| ctx("devices"), &d, "NOT_FOUND");
            v.err(|| ctx("vehicles"), &x, "NOT_FOUND");
            v.err(|| ctx("accounts"), &acc, "NOT_FOUND");
            return;
        }
        Some(u) => w.subtree(u),
        None => visible,
    };
    let e = expected_in(w, &scope);
    match g {
        Ok(g) => v.eq(|| ctx("groups"), g, e.groups),
        Err(err) => v.check(false, || format!("{}: {err}", ctx("groups"))),
    }
    match d {
        Ok(d) => v.eq(|| ctx("devices"), d, e.devices),
        Err(err) => v.check(false, || format!("{}: {err}", ctx("devices"))),
    }
    match x {
        Ok(x) => v.eq(|| ctx("vehicles"), x, e.vehicles),
        Err(err) => v.check(false, || format!("{}: {err}", ctx("vehicles"))),
    }
    match acc {
        Ok(acc) => v.eq(|| ctx("accounts"), acc, e.accounts),
        Err(err) => v.check(false, || format!("{}: {err}", ctx("accounts"))),
    }
}

/// Ids that never existed, to compare "invisible" with "missing".
fn missing_group(w: &World) -> GroupId {
    let max = w
        .groups
        .keys()
        .chain(w.deleted_groups.iter())
        .map(|g| g.0)
        .max()
        .unwrap_or(0);
    GroupId(max + 1000)
}

fn missing_vehicle(w: &World) -> VehicleId {
    let max = w
        .vehicles
        .keys()
        .chain(w.deleted_vehicles.iter())
        .map(|x| x.0)
        .max()
        .unwrap_or(0);
    VehicleId(max + 1000)
}

/// An IMEI no device of any world has.
fn missing_imei() -> String {
    imei_with_check_digit("99000000000000")
        .unwrap()
        .as_str()
        .to_owned()
}

async fn check_group_reads(w: &World, v: &mut Violations, a: usize) {
    let eff = w.effective(a);
    let missing = missing_group(w);
    let missing_err = w
        .ekko
        .group(w.caller(a), &missing.to_string())
        .await
        .expect_err("a group that never existed");
    let mut all: Vec<GroupId> = w.groups.keys().copied().collect();
    all.extend(w.deleted_groups.iter().copied());
    for g in all {
        let ctx = |op: &str| format!("{}: {op}({g})", w.who(a));
        let id = g.to_string();
        let group = w.ekko.group(w.caller(a), &id).await;
        let my_role = w.ekko.role_on_group(w.caller(a), g).await;
        let roles = w.ekko.group_roles(w.caller(a), g).await;
        let subgroups = all_pages(v, &ctx("subgroups"), |p| async move {
            w.ekko.subgroups(w.caller(a), g, page_args(&p, 2)).await
        })
        .await;
        match eff.get(&g) {
            None => {
                v.err(|| ctx("group"), &group, "NOT_FOUND");
                if let Err(e) = &group {
                    v.eq(
                        || format!("{}: worded like a missing group", ctx("group")),
                        shape(e, &id),
                        shape(&missing_err, &missing.to_string()),
                    );
                }
                v.err(|| ctx("role_on_group"), &my_role, "NOT_FOUND");
                v.err(|| ctx("group_roles"), &roles, "NOT_FOUND");
                v.err(|| ctx("subgroups"), &subgroups, "NOT_FOUND");
            }
            Some(role) => {
                let m = &w.groups[&g];
                match group {
                    Ok(x) => v.eq(
                        || ctx("group"),
                        (x.id, x.parent, x.name),
                        (g, m.parent, m.name.clone()),
                    ),
                    Err(e) => v.check(false, || format!("{}: {e}", ctx("group"))),
                }
                match my_role {
                    Ok(r) => v.eq(|| ctx("role_on_group"), r, *role),
                    Err(e) => v.check(false, || format!("{}: {e}", ctx("role_on_group"))),
                }
                let expected: BTreeSet<(AccountId, Role)> = w
                    .grants
                    .iter()
                    .filter(|((_, on), _)| *on == g)
                    .map(|((holder, _), r)| (w.accounts[*holder].id, *r))
                    .collect();
                match roles {
                    Ok(r) => v.eq(
                        || ctx("group_roles"),
                        r.into_iter()
                            .map(|x: RoleGrant| (x.account, x.role))
                            .collect(),
                        expected,
                    ),
                    Err(e) => v.check(false, || format!("{}: {e}", ctx("group_roles"))),
                }
                match subgroups {
                    Ok(s) => v.eq(
                        || ctx("subgroups"),
                        s.into_iter().map(|x: Group| x.id).collect(),
                        w.children(g),
                    ),
                    Err(e) => v.check(false, || format!("{}: {e}", ctx("subgroups"))),
                }
            }
        }
    }
}

async fn check_device_reads(w: &World, v: &mut Violations, a: usize) {
    let eff = w.effective(a);
    let missing_err = w
        .ekko
        .device(w.caller(a), &missing_imei())
        .await
        .expect_err("a device that never existed");
    let mut all: Vec<(String, Option<&DeviceModel>)> = w
        .devices
        .iter()
        .map(|(i, d)| (i.clone(), Some(d)))
        .collect();
    all.extend(w.deleted_devices.iter().map(|i| (i.clone(), None)));
    for (imei, model) in all {
        let ctx = |op: &str| format!("{}: {op}({imei})", w.who(a));
        let c = w.caller(a);
        let device = w.ekko.device(c, &imei).await;
        let tracks = w
            .ekko
            .device_tracks(c, &imei, TimeWindow::default(), None, PageArgs::default())
            .await;
        let last_values = w.ekko.device_last_values(c, &imei, None).await;
        let last_position = w.ekko.device_last_position(c, &imei).await;
        let readings = w
            .ekko
            .device_readings(
                c,
                &imei,
                "GPS_SPEED",
                TimeWindow::default(),
                PageArgs::default(),
            )
            .await;
        let recent = w.ekko.recent_tracks(c, &imei, 10).await;
        let installs = w.ekko.device_installations(c, &imei).await;
        let visible = model.filter(|m| eff.contains_key(&m.group));
        match visible {
            None => {
                v.err(|| ctx("device"), &device, "NOT_FOUND");
                if let Err(e) = &device {
                    v.eq(
                        || format!("{}: worded like a missing device", ctx("device")),
                        shape(e, &imei),
                        shape(&missing_err, &missing_imei()),
                    );
                }
                v.err(|| ctx("device_tracks"), &tracks, "NOT_FOUND");
                v.err(|| ctx("device_last_values"), &last_values, "NOT_FOUND");
                v.err(|| ctx("device_last_position"), &last_position, "NOT_FOUND");
                v.err(|| ctx("device_readings"), &readings, "NOT_FOUND");
                v.err(|| ctx("recent_tracks"), &recent, "NOT_FOUND");
                v.err(|| ctx("device_installations"), &installs, "NOT_FOUND");
            }
            Some(m) => {
                match device {
                    Ok(d) => v.eq(
                        || ctx("device"),
                        (d.imei.as_str().to_owned(), d.group),
                        (imei.clone(), m.group),
                    ),
                    Err(e) => v.check(false, || format!("{}: {e}", ctx("device"))),
                }
                match tracks {
                    Ok(t) => v.eq(|| ctx("device_tracks count"), t.count, Some(m.tracks)),
                    Err(e) => v.check(false, || format!("{}: {e}", ctx("device_tracks"))),
                }
                match last_values {
                    Ok(l) => v.eq(
                        || ctx("device_last_values present"),
                        !l.is_empty(),
                        m.tracks > 0,
                    ),
                    Err(e) => v.check(false, || format!("{}: {e}", ctx("device_last_values"))),
                }
                match last_position {
                    Ok(p) => v.eq(
                        || ctx("device_last_position present"),
                        p.is_some(),
                        m.tracks > 0,
                    ),
                    Err(e) => v.check(false, || format!("{}: {e}", ctx("device_last_position"))),
                }
                match readings {
                    Ok(r) => v.eq(|| ctx("device_readings count"), r.count, Some(m.tracks)),
                    Err(e) => v.check(false, || format!("{}: {e}", ctx("device_readings"))),
                }
                match recent {
                    Ok(r) => v.eq(|| ctx("recent_tracks"), r.len() as u64, m.tracks),
                    Err(e) => v.check(false, || format!("{}: {e}", ctx("recent_tracks"))),
                }
                // Installations in vehicles the account cannot see are left out.
                let mut expected: Vec<VehicleId> = w
                    .installations
                    .iter()
                    .filter(|(i, x)| *i == imei && eff.contains_key(&w.vehicles[x].group))
                    .map(|(_, x)| *x)
                    .collect();
                expected.sort();
                match installs {
                    Ok(i) => {
                        let mut got: Vec<VehicleId> =
                            i.into_iter().map(|x: Installation| x.vehicle).collect();
                        got.sort();
                        v.eq(|| ctx("device_installations"), got, expected);
                    }
                    Err(e) => v.check(false, || format!("{}: {e}", ctx("device_installations"))),
                }
            }
        }
    }
}

async fn check_vehicle_reads(w: &World, v: &mut Violations, a: usize) {
    let eff = w.effective(a);
    let missing = missing_vehicle(w);
    let missing_err = w
        .ekko
        .vehicle(w.caller(a), &missing.to_string())
        .await
        .expect_err("a vehicle that never existed");
    let mut all: Vec<(VehicleId, Option<&VehicleModel>)> =
        w.vehicles.iter().map(|(i, x)| (*i, Some(x))).collect();
    all.extend(w.deleted_vehicles.iter().map(|i| (*i, None)));
    for (id, model) in all {
        let ctx = |op: &str| format!("{}: {op}({id})", w.who(a));
        let vehicle = w.ekko.vehicle(w.caller(a), &id.to_string()).await;
        let installs = w.ekko.vehicle_installations(w.caller(a), id).await;
        match model.filter(|m| eff.contains_key(&m.group)) {
            None => {
                v.err(|| ctx("vehicle"), &vehicle, "NOT_FOUND");
                if let Err(e) = &vehicle {
                    v.eq(
                        || format!("{}: worded like a missing vehicle", ctx("vehicle")),
                        shape(e, &id.to_string()),
                        shape(&missing_err, &missing.to_string()),
                    );
                }
                v.err(|| ctx("vehicle_installations"), &installs, "NOT_FOUND");
            }
            Some(m) => {
                match vehicle {
                    Ok(x) => v.eq(|| ctx("vehicle"), (x.id, x.group), (id, m.group)),
                    Err(e) => v.check(false, || format!("{}: {e}", ctx("vehicle"))),
                }
                let mut expected: Vec<String> = w
                    .installations
                    .iter()
                    .filter(|(i, x)| *x == id && eff.contains_key(&w.devices[i].group))
                    .map(|(i, _)| i.clone())
                    .collect();
                expected.sort();
                match installs {
                    Ok(i) => {
                        let mut got: Vec<String> =
                            i.into_iter().map(|x| x.imei.as_str().to_owned()).collect();
                        got.sort();
                        v.eq(|| ctx("vehicle_installations"), got, expected);
                    }
                    Err(e) => v.check(false, || format!("{}: {e}", ctx("vehicle_installations"))),
                }
            }
        }
    }
}

async fn check_account_reads(w: &World, v: &mut Violations, a: usize) {
    let eff = w.effective(a);
    let me = w.ekko.account(w.caller(a), None).await;
    match me {
        Ok(x) => v.eq(
            || format!("{}: account(me)", w.who(a)),
            x.id,
            w.accounts[a].id,
        ),
        Err(e) => v.check(false, || format!("{}: account(me): {e}", w.who(a))),
    }
    let missing = AccountId::new_random().to_string();
    let missing_err = w
        .ekko
        .account(w.caller(a), Some(&missing))
        .await
        .expect_err("an account that never existed");
    for t in 0..w.accounts.len() {
        let id = w.accounts[t].id.to_string();
        let ctx = |op: &str| format!("{}: {op}(#{t} {id})", w.who(a));
        let their: Vec<(GroupId, Role)> = w
            .grants
            .iter()
            .filter(|((holder, _), _)| *holder == t)
            .map(|((_, g), r)| (*g, *r))
            .collect();
        let visible = t == a || their.iter().any(|(g, _)| eff.contains_key(g));
        let account = w.ekko.account(w.caller(a), Some(&id)).await;
        if visible {
            match account {
                Ok(x) => v.eq(|| ctx("account"), x.email, w.accounts[t].email.clone()),
                Err(e) => v.check(false, || format!("{}: {e}", ctx("account"))),
            }
        } else {
            v.err(|| ctx("account"), &account, "NOT_FOUND");
            if let Err(e) = &account {
                v.eq(
                    || format!("{}: worded like a missing account", ctx("account")),
                    shape(e, &id),
                    shape(&missing_err, &missing),
                );
            }
        }
        let expected: BTreeSet<(GroupId, Role)> = their
            .into_iter()
            .filter(|(g, _)| t == a || eff.contains_key(g))
            .collect();
        match w.ekko.account_roles(w.caller(a), w.accounts[t].id).await {
            Ok(r) => v.eq(
                || ctx("account_roles"),
                r.into_iter().map(|x| (x.group, x.role)).collect(),
                expected,
            ),
            Err(e) => v.check(false, || format!("{}: {e}", ctx("account_roles"))),
        }
    }
}

// ---------------------------------------------------------------- the state, for "nothing changed"

/// Everything a mutation could change, read from the store directly (not through any rights).
#[derive(Debug, PartialEq)]
struct Snapshot {
    groups: Vec<Group>,
    devices: Vec<Device>,
    vehicles: Vec<Vehicle>,
    roles: Vec<RoleGrant>,
    installations: Vec<Installation>,
    tracks: Vec<u64>,
}

async fn snapshot(w: &World) -> Snapshot {
    let store = w.ekko.store();
    let top = missing_group(w).0 + 1000;
    let all = ListFilter {
        groups: (1..top).map(GroupId).collect(),
        ..Default::default()
    };
    let devices = store.devices_page(&all, None, 100_000).await.unwrap();
    let mut installations = vec![];
    let mut tracks = vec![];
    for d in &devices {
        installations.extend(store.installations_of_device(&d.imei).await.unwrap());
        tracks.push(store.count_tracks(&d.imei, None, None).await.unwrap());
    }
    Snapshot {
        groups: store.groups_page(&all, None, 100_000).await.unwrap(),
        vehicles: store.vehicles_page(&all, None, 100_000).await.unwrap(),
        roles: store.roles_on(&all.groups).await.unwrap(),
        devices,
        installations,
        tracks,
    }
}

/// A raw subscription to every device on the bus (no rights involved): anything published
/// (a message, a poke, a track) shows up here, at once.
fn watch_everything(w: &World) -> Vec<BusStream> {
    let imeis: Vec<Imei> = w.devices.keys().map(|i| Imei::parse(i).unwrap()).collect();
    vec![w.bus.subscribe(&imeis)]
}

fn published(watchers: &mut [BusStream]) -> Vec<String> {
    let mut out = vec![];
    for s in watchers.iter_mut() {
        while let Some(Some(item)) = s.next().now_or_never() {
            out.push(match item {
                BusItem::Notification(p) => format!("{:?}", p.notification),
                other => format!("{other:?}"),
            });
        }
    }
    out
}

/// Reads a subscription until it delivered `max` items or ended (a withdrawal ends it); the
/// flag is true when it went quiet for seconds before that (rights are rechecked with store
/// reads, so an item may take a moment).
async fn next_items(s: &mut BusStream, max: usize) -> (Vec<BusItem>, bool) {
    let mut out = vec![];
    while out.len() < max {
        match tokio::time::timeout(Duration::from_secs(5), s.next()).await {
            Ok(Some(item)) => out.push(item),
            Ok(None) => break,
            Err(_) => return (out, true),
        }
    }
    (out, false)
}

/// After `ops`, the store holds exactly `before` and nothing was published.
async fn unchanged(
    w: &World,
    v: &mut Violations,
    watchers: &mut [BusStream],
    before: &Snapshot,
    ops: &[String],
) {
    if ops.is_empty() {
        return;
    }
    let after = snapshot(w).await;
    let what = || format!("state after refused {}", ops.join("; "));
    if after != *before {
        v.check(false, || {
            format!(
                "{} changed\n    before {}\n    after  {}",
                what(),
                truncate(&format!("{before:?}")),
                truncate(&format!("{after:?}"))
            )
        });
    }
    let p = published(watchers);
    v.check(p.is_empty(), || {
        format!("{} published {}", what(), truncate(&format!("{p:?}")))
    });
}

// ---------------------------------------------------------------- refused mutations

/// Tries, as `a`, every mutation its roles do not allow, on every device, vehicle and group;
/// checks each error and that nothing changed.
async fn try_forbidden_mutations(
    w: &World,
    v: &mut Violations,
    watchers: &mut [BusStream],
    a: usize,
) {
    let eff = w.effective(a);
    let c = w.caller(a);
    let before = snapshot(w).await;
    let groups: Vec<GroupId> = w.groups.keys().copied().collect();

    // Devices: change, delete, message, poke, detach, move (manager on its group).
    for (imei, d) in &w.devices {
        let mut ops = vec![];
        let had = eff.get(&d.group).copied();
        if let Some(code) = denial(had, Role::Manager) {
            let ctx = |op: &str| format!("{}: {op}({imei}) with {had:?} on {}", w.who(a), d.group);
            let r = w
                .ekko
                .update_device(c, imei, Some("hijacked"), None, Some("suspended"), None)
                .await;
            v.err(|| ctx("update_device"), &r, code);
            let r = w.ekko.remove_device(c, imei).await;
            v.err(|| ctx("remove_device"), &r, code);
            let r = w.ekko.send_message(c, imei, "cmd", b"stop".to_vec()).await;
            v.err(|| ctx("send_message"), &r, code);
            let r = w.ekko.send_poke(c, imei, "config", b"x".to_vec()).await;
            v.err(|| ctx("send_poke"), &r, code);
            let r = w.ekko.detach_device(c, imei).await;
            v.err(|| ctx("detach_device"), &r, code);
            // A move is refused for the device first, wherever it goes.
            for to in &groups {
                let r = w
                    .ekko
                    .update_device(c, imei, None, None, None, Some(&to.to_string()))
                    .await;
                v.err(|| ctx(&format!("update_device(group_id {to})")), &r, code);
            }
            ops.push(format!("device ops on {imei}"));
        } else {
            // Manager of the device: moving it where it may not manage is refused, and so is
            // moving it to another organization (its data would cross to another tenant).
            for to in &groups {
                let to_had = eff.get(to).copied();
                let expected = denial(to_had, Role::Manager)
                    .or((w.org_of(*to) != w.org_of(d.group)).then_some("BAD_USER_INPUT"));
                if let Some(code) = expected {
                    let r = w
                        .ekko
                        .update_device(c, imei, None, None, None, Some(&to.to_string()))
                        .await;
                    v.err(
                        || {
                            format!(
                                "{}: update_device({imei}, group_id {to}) with {to_had:?} there",
                                w.who(a)
                            )
                        },
                        &r,
                        code,
                    );
                    ops.push(format!("move {imei} to {to}"));
                }
            }
        }
        unchanged(w, v, watchers, &before, &ops).await;
    }

    // Vehicles: change, delete, move (manager on its group).
    for (id, x) in &w.vehicles {
        let mut ops = vec![];
        let had = eff.get(&x.group).copied();
        let sid = id.to_string();
        if let Some(code) = denial(had, Role::Manager) {
            let ctx = |op: &str| format!("{}: {op}({id}) with {had:?} on {}", w.who(a), x.group);
            let hijack = VehicleArgs {
                name: Some("hijacked"),
                plate: Some("AB-123-CD"),
                ..Default::default()
            };
            let r = w.ekko.update_vehicle(c, &sid, None, &hijack).await;
            v.err(|| ctx("update_vehicle"), &r, code);
            let r = w.ekko.delete_vehicle(c, &sid).await;
            v.err(|| ctx("delete_vehicle"), &r, code);
            for to in &groups {
                let r = w
                    .ekko
                    .update_vehicle(c, &sid, Some(&to.to_string()), &VehicleArgs::default())
                    .await;
                v.err(|| ctx(&format!("update_vehicle(group_id {to})")), &r, code);
            }
            ops.push(format!("vehicle ops on {id}"));
        } else {
            for to in &groups {
                let to_had = eff.get(to).copied();
                let expected = denial(to_had, Role::Manager)
                    .or((w.org_of(*to) != w.org_of(x.group)).then_some("BAD_USER_INPUT"));
                if let Some(code) = expected {
                    let r = w
                        .ekko
                        .update_vehicle(c, &sid, Some(&to.to_string()), &VehicleArgs::default())
                        .await;
                    v.err(
                        || {
                            format!(
                                "{}: update_vehicle({id}, group_id {to}) with {to_had:?} there",
                                w.who(a)
                            )
                        },
                        &r,
                        code,
                    );
                    ops.push(format!("move vehicle {id} to {to}"));
                }
            }
        }
        unchanged(w, v, watchers, &before, &ops).await;
    }

    // Installations: manager on the device, then on the vehicle, then one organization.
    let mut ops = vec![];
    for (imei, d) in &w.devices {
        for (id, x) in &w.vehicles {
            let dev_had = eff.get(&d.group).copied();
            let veh_had = eff.get(&x.group).copied();
            let expected = denial(dev_had, Role::Manager)
                .or(denial(veh_had, Role::Manager))
                .or((w.org_of(d.group) != w.org_of(x.group)).then_some("BAD_USER_INPUT"));
            if let Some(code) = expected {
                let r = w.ekko.attach_device(c, imei, &id.to_string()).await;
                v.err(
                    || {
                        format!(
                            "{}: attach_device({imei} [{dev_had:?}], vehicle {id} [{veh_had:?}])",
                            w.who(a)
                        )
                    },
                    &r,
                    code,
                );
                ops.push(format!("attach {imei} to {id}"));
            }
        }
    }
    unchanged(w, v, watchers, &before, &ops).await;

    // Groups: subgroups, renames, moves, deletions, roles (admin); devices and vehicles
    // registered there (manager).
    let mut all_groups = groups.clone();
    all_groups.extend(w.deleted_groups.iter().copied());
    for g in &all_groups {
        let mut ops = vec![];
        let had = eff.get(g).copied();
        let sg = g.to_string();
        let ctx = |op: &str| format!("{}: {op}({g}) with {had:?} there", w.who(a));
        if let Some(code) = denial(had, Role::Admin) {
            let r = w.ekko.create_group(c, &sg, "intruder", None).await;
            v.err(|| ctx("create_group"), &r, code);
            let r = w
                .ekko
                .update_group(c, &sg, Some("renamed"), None, None)
                .await;
            v.err(|| ctx("update_group"), &r, code);
            let r = w.ekko.delete_group(c, &sg).await;
            v.err(|| ctx("delete_group"), &r, code);
            for role in ROLES {
                let r = w
                    .ekko
                    .invite(c, &sg, &w.accounts[a].email, role.as_str())
                    .await;
                v.err(|| ctx(&format!("invite(self as {role})")), &r, code);
                let r = w
                    .ekko
                    .invite(c, &sg, "stranger@nowhere.test", role.as_str())
                    .await;
                v.err(|| ctx(&format!("invite(new email as {role})")), &r, code);
            }
            for holder in 0..w.accounts.len() {
                let r = w
                    .ekko
                    .revoke_role(c, &sg, &w.accounts[holder].id.to_string())
                    .await;
                v.err(|| ctx(&format!("revoke_role(#{holder})")), &r, code);
            }
            ops.push(format!("admin ops on group {g}"));
        } else if w.parent(*g).is_none() {
            // Admin of a root group: it is neither deleted nor moved.
            let r = w.ekko.delete_group(c, &sg).await;
            v.err(|| ctx("delete_group(root)"), &r, "BAD_USER_INPUT");
            ops.push(format!("delete root group {g}"));
        } else if w.children(*g).len()
            + w.devices.values().filter(|d| d.group == *g).count()
            + w.vehicles.values().filter(|x| x.group == *g).count()
            > 0
        {
            let r = w.ekko.delete_group(c, &sg).await;
            v.err(|| ctx("delete_group(not empty)"), &r, "BAD_USER_INPUT");
            ops.push(format!("delete non-empty group {g}"));
        }
        // Moving a group: admin on it, then admin on the new parent.
        if w.groups.contains_key(g) && w.parent(*g).is_some() {
            for p in &groups {
                // (Its own parent is no move at all.)
                let same_parent = w.parent(*g) == Some(*p);
                if w.within(*p, *g) || same_parent || w.org_of(*p) != w.org_of(*g) {
                    continue;
                }
                if let Some(code) =
                    denial(had, Role::Admin).or(denial(eff.get(p).copied(), Role::Admin))
                {
                    let r = w
                        .ekko
                        .update_group(c, &sg, None, None, Some(&p.to_string()))
                        .await;
                    v.err(
                        || {
                            format!(
                                "{} under {p} ({:?} there)",
                                ctx("update_group(move)"),
                                eff.get(p)
                            )
                        },
                        &r,
                        code,
                    );
                    ops.push(format!("move group {g} under {p}"));
                }
            }
        }
        if let Some(code) = denial(had, Role::Manager) {
            let r = w
                .ekko
                .add_device(c, "356307042441013", &sg, Some("planted"), None)
                .await;
            v.err(|| ctx("add_device"), &r, code);
            let r = w
                .ekko
                .create_vehicle(
                    c,
                    &sg,
                    &VehicleArgs {
                        name: Some("planted"),
                        ..Default::default()
                    },
                )
                .await;
            v.err(|| ctx("create_vehicle"), &r, code);
            ops.push(format!("manager ops on group {g}"));
        }
        unchanged(w, v, watchers, &before, &ops).await;
    }
}

// ---------------------------------------------------------------- the tests

#[tokio::test]
async fn every_account_reads_exactly_what_its_roles_show_and_nothing_else() {
    let mut v = Violations::default();
    for seed in seeds() {
        let w = build(seed).await;
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
        for a in 0..w.accounts.len() {
            check_lists(&w, &mut v, &mut rng, a, None).await;
            let mut all: Vec<GroupId> = w.groups.keys().copied().collect();
            all.extend(w.deleted_groups.iter().copied());
            all.push(missing_group(&w));
            for g in all {
                check_lists(&w, &mut v, &mut rng, a, Some(g)).await;
            }
            check_group_reads(&w, &mut v, a).await;
            check_device_reads(&w, &mut v, a).await;
            check_vehicle_reads(&w, &mut v, a).await;
            check_account_reads(&w, &mut v, a).await;
        }
        w.store.close().await;
    }
    v.finish("reads");
}

#[tokio::test]
async fn no_account_changes_anything_outside_its_roles() {
    let mut v = Violations::default();
    for seed in seeds() {
        let w = build(seed).await;
        let mut watchers = watch_everything(&w);
        for a in 0..w.accounts.len() {
            try_forbidden_mutations(&w, &mut v, &mut watchers, a).await;
        }
        w.store.close().await;
    }
    v.finish("mutations");
}

#[tokio::test]
async fn subscriptions_are_refused_for_invisible_devices_and_deliver_exactly_the_visible_ones() {
    let mut v = Violations::default();
    for seed in seeds() {
        let w = build(seed).await;
        let mut streams: Vec<(usize, BusStream)> = vec![];
        for a in 0..w.accounts.len() {
            let eff = w.effective(a);
            let mut visible = vec![];
            let mut unknown = vec![];
            for (imei, d) in &w.devices {
                if eff.contains_key(&d.group) {
                    visible.push(imei.clone());
                } else {
                    unknown.push(imei.clone());
                }
            }
            unknown.extend(w.deleted_devices.iter().cloned());
            unknown.push(missing_imei());
            for d in &unknown {
                let r = w
                    .ekko
                    .subscribe_devices(w.caller(a), std::slice::from_ref(d))
                    .await
                    .map(drop);
                v.err(
                    || format!("{}: subscribe_devices([{d}])", w.who(a)),
                    &r,
                    "FORBIDDEN",
                );
                let mut mixed = visible.clone();
                mixed.push(d.clone());
                let r = w
                    .ekko
                    .subscribe_devices(w.caller(a), &mixed)
                    .await
                    .map(drop);
                v.err(
                    || format!("{}: subscribe_devices(visible + [{d}])", w.who(a)),
                    &r,
                    "FORBIDDEN",
                );
            }
            if !visible.is_empty() {
                match w.ekko.subscribe_devices(w.caller(a), &visible).await {
                    Ok(s) => streams.push((a, s)),
                    Err(e) => v.check(false, || {
                        format!("{}: subscribe_devices({visible:?}): {e}", w.who(a))
                    }),
                }
            }
        }
        // One new track from every device: each subscriber gets exactly its visible ones.
        let batch: Vec<TrackRecord> = w.devices.keys().map(|i| track(i, 100)).collect();
        w.ekko.ingest_tracks(batch).await.unwrap();
        for (a, s) in &mut streams {
            let eff = w.effective(*a);
            let expected: BTreeSet<String> = w
                .devices
                .iter()
                .filter(|(_, d)| eff.contains_key(&d.group))
                .map(|(i, _)| i.clone())
                .collect();
            let (items, stalled) = next_items(s, expected.len()).await;
            v.check(!stalled, || {
                format!("{}: the subscription stalled", w.who(*a))
            });
            let mut got = BTreeSet::new();
            for item in items {
                match item {
                    BusItem::Notification(p) => {
                        got.insert(p.device().as_str().to_owned());
                    }
                    other => v.check(false, || format!("{}: unexpected {other:?}", w.who(*a))),
                }
            }
            v.eq(|| format!("{}: devices notified", w.who(*a)), got, expected);
            let extra = s.next().now_or_never();
            v.check(extra.is_none(), || {
                format!("{}: notified beyond its devices: {extra:?}", w.who(*a))
            });
        }
        drop(streams);
        w.store.close().await;
    }
    v.finish("subscriptions");
}

#[tokio::test]
async fn integrations_push_only_for_devices_their_account_manages() {
    let mut v = Violations::default();
    for seed in seeds() {
        let w = build(seed).await;
        for a in 0..w.accounts.len() {
            let (integration, secret) = w
                .ekko
                .create_integration(&w.accounts[a].email)
                .await
                .unwrap();
            assert_eq!(integration.account, w.accounts[a].id);
            let ic = w.ekko.authenticate_integration(&secret).await.unwrap();
            assert_eq!(ic.account, w.accounts[a].id);
            let eff = w.effective(a);
            let mut all: Vec<(String, Option<GroupId>)> = w
                .devices
                .iter()
                .map(|(i, d)| (i.clone(), Some(d.group)))
                .collect();
            all.extend(w.deleted_devices.iter().map(|i| (i.clone(), None)));
            all.push((missing_imei(), None));
            for (imei, group) in all {
                let had = group.and_then(|g| eff.get(&g).copied());
                let r = w
                    .ekko
                    .authorize_integration_device(&ic, &Imei::parse(&imei).unwrap(), "test")
                    .await;
                let ctx = || {
                    format!(
                        "{}: integration push for {imei} with {had:?} on {group:?}",
                        w.who(a)
                    )
                };
                if had.is_some_and(|r| r >= Role::Manager) {
                    v.check(r.is_ok(), || format!("{}: refused: {r:?}", ctx()));
                } else {
                    v.err(ctx, &r, "FORBIDDEN");
                }
            }
        }
        w.store.close().await;
    }
    v.finish("integrations");
}

#[tokio::test]
async fn live_data_stops_reaching_an_account_that_no_longer_sees_the_device() {
    let mut v = Violations::default();
    for seed in seeds() {
        let mut w = build(seed).await;
        let mut rng = StdRng::seed_from_u64(seed ^ 0x11fe);
        // Every account listens to every device it sees now...
        let mut streams: Vec<(usize, usize, BusStream)> = vec![];
        for a in 0..w.accounts.len() {
            let eff = w.effective(a);
            let visible: Vec<String> = w
                .devices
                .iter()
                .filter(|(_, d)| eff.contains_key(&d.group))
                .map(|(i, _)| i.clone())
                .collect();
            if !visible.is_empty() {
                let s = w.ekko.subscribe_devices(w.caller(a), &visible).await;
                streams.push((a, visible.len(), s.expect("subscribing to visible devices")));
            }
        }
        // ...then roles are revoked and groups and devices move...
        let changes_from = w.log.len();
        for _ in 0..rng.random_range(1..=3) {
            revoke_a_role(&mut w, &mut rng).await;
        }
        move_a_group(&mut w, &mut rng).await;
        move_a_device(&mut w, &mut rng).await;
        let changes = w.log[changes_from..].join("; ");
        eprintln!("seed {seed}: then {changes}");
        // ...and every device records a track: none may reach an account that lost sight of it.
        let batch: Vec<TrackRecord> = w.devices.keys().map(|i| track(i, 200)).collect();
        w.ekko.ingest_tracks(batch).await.unwrap();
        for (a, n, s) in &mut streams {
            let eff = w.effective(*a);
            let sees = |imei: &str| eff.contains_key(&w.devices[imei].group);
            // One track per device it listens to, unless the stream ends on a withdrawal.
            let (items, stalled) = next_items(s, *n).await;
            v.check(!stalled, || {
                format!("{}: the subscription stalled", w.who(*a))
            });
            for item in items {
                match item {
                    BusItem::Notification(p) => {
                        let imei = p.device().as_str();
                        v.check(sees(imei), || {
                            format!(
                                "{}: subscription still delivers a track of {imei} (now in group {}, \
                                 which it no longer sees) after: {changes}",
                                w.who(*a),
                                w.devices[imei].group
                            )
                        });
                    }
                    BusItem::AccessWithdrawn(imei) => {
                        v.check(!sees(imei.as_str()), || {
                            format!(
                                "{}: subscription withdrawn for {imei}, which it still sees, after: {changes}",
                                w.who(*a)
                            )
                        });
                    }
                    BusItem::Overflowed => v.check(false, || format!("{}: overflowed", w.who(*a))),
                }
            }
        }
        drop(streams);
        w.store.close().await;
    }
    v.finish("live data after a change of rights");
}

#[tokio::test]
async fn an_organization_never_loses_the_last_admin_of_its_root_group() {
    let mut v = Violations::default();
    for seed in seeds() {
        let w = build(seed).await;
        for (o, org) in w.orgs.iter().enumerate() {
            let admins: Vec<usize> = w
                .grants
                .iter()
                .filter(|((_, g), r)| *g == org.root && **r == Role::Admin)
                .map(|((a, _), _)| *a)
                .collect();
            if admins != [org.founder] {
                continue; // another admin may take over: nothing to protect
            }
            let f = org.founder;
            let root = org.root.to_string();
            let ctx = |op: &str| format!("{}: {op} on root group {root} of org #{o}", w.who(f));
            // The rule as revoke_role enforces it...
            let r = w
                .ekko
                .revoke_role(w.caller(f), &root, &w.accounts[f].id.to_string())
                .await;
            v.err(
                || ctx("revoke_role(self, the last admin)"),
                &r,
                "BAD_USER_INPUT",
            );
            // ...holds for a downgrade through invite too.
            for role in [Role::Viewer, Role::Manager] {
                let r = w
                    .ekko
                    .invite(w.caller(f), &root, &w.accounts[f].email, role.as_str())
                    .await;
                v.err(
                    || ctx(&format!("invite(self as {role}, the last admin)")),
                    &r,
                    "BAD_USER_INPUT",
                );
                let left = w.ekko.store().roles_on(&[org.root]).await.unwrap();
                let has_admin = left.iter().any(|g| g.role == Role::Admin);
                v.check(has_admin, || {
                    format!(
                        "{}: root group left without an admin: {left:?}",
                        ctx(&format!("invite(self as {role})"))
                    )
                });
                if !has_admin {
                    break;
                }
            }
        }
        w.store.close().await;
    }
    v.finish("last admin");
}
