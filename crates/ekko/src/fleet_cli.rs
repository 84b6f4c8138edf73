//! `ekko group …` and `ekko vehicle …`: the fleet graph from the command line. Every command
//! acts as the account given with `--account`, with exactly its rights (`Ekko::act_as`), and
//! calls the same domain functions as the GraphQL mutations.

use anyhow::Result;
use clap::{Args, Subcommand};
use ekko_core::Ekko;
use ekko_core::service::fleet::{InviteOutcome, ListArgs, VehicleArgs};
use ekko_core::service::history::PageArgs;

use crate::cli::DataDir;
use crate::server;

/// Who acts, and where.
#[derive(Args, Debug, Clone)]
pub struct Actor {
    #[command(flatten)]
    data: DataDir,
    /// Email of the account to act as (its roles decide what is allowed).
    #[arg(long)]
    account: String,
}

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// List the groups the account can see (id, parent, name, its role).
    List {
        #[command(flatten)]
        actor: Actor,
        /// Only this group and the groups below it.
        #[arg(long)]
        group: Option<String>,
        /// Only groups whose name contains this.
        #[arg(long)]
        text: Option<String>,
    },
    /// Create a group (admin on the parent).
    Create {
        #[command(flatten)]
        actor: Actor,
        /// The parent group's id (default: the root group of the account's organization).
        #[arg(long)]
        parent: Option<String>,
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// Rename, re-describe or move a group (admin on it, and on the new parent).
    Update {
        #[command(flatten)]
        actor: Actor,
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        parent: Option<String>,
    },
    /// Delete an empty group (admin on it).
    Delete {
        #[command(flatten)]
        actor: Actor,
        #[arg(long)]
        id: String,
    },
    /// Give an email a role (viewer, manager, admin) on a group (admin there). An email with
    /// no account yet gets the role when it signs up.
    Invite {
        #[command(flatten)]
        actor: Actor,
        #[arg(long)]
        group: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        role: String,
    },
    /// Take a role away (admin on the group).
    Revoke {
        #[command(flatten)]
        actor: Actor,
        #[arg(long)]
        group: String,
        /// Email of the account that loses its role.
        #[arg(long)]
        email: String,
    },
}

#[derive(Args, Debug, Clone, Default)]
pub struct VehicleFields {
    #[arg(long)]
    name: Option<String>,
    /// 17 characters (ISO 3779).
    #[arg(long)]
    vin: Option<String>,
    #[arg(long)]
    plate: Option<String>,
    #[arg(long)]
    make: Option<String>,
    #[arg(long)]
    model: Option<String>,
    #[arg(long)]
    year: Option<i32>,
    /// petrol, diesel, electric, hybrid, plugin_hybrid, lpg, cng, hydrogen or other.
    #[arg(long)]
    fuel_type: Option<String>,
}

impl VehicleFields {
    fn args(&self) -> VehicleArgs<'_> {
        VehicleArgs {
            name: self.name.as_deref(),
            vin: self.vin.as_deref(),
            plate: self.plate.as_deref(),
            make: self.make.as_deref(),
            model: self.model.as_deref(),
            year: self.year,
            fuel_type: self.fuel_type.as_deref(),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum VehicleCommand {
    /// List the vehicles the account can see.
    List {
        #[command(flatten)]
        actor: Actor,
        #[arg(long)]
        group: Option<String>,
        /// Only vehicles whose name, VIN, plate, make or model contains this.
        #[arg(long)]
        text: Option<String>,
    },
    /// Create a vehicle (manager on the group).
    Create {
        #[command(flatten)]
        actor: Actor,
        /// The group (default: the root group of the account's organization).
        #[arg(long)]
        group: Option<String>,
        #[command(flatten)]
        fields: VehicleFields,
    },
    /// Change or move a vehicle (`--name ""` clears a field).
    Update {
        #[command(flatten)]
        actor: Actor,
        #[arg(long)]
        id: String,
        #[arg(long)]
        group: Option<String>,
        #[command(flatten)]
        fields: VehicleFields,
    },
    /// Delete a vehicle and its installation history.
    Delete {
        #[command(flatten)]
        actor: Actor,
        #[arg(long)]
        id: String,
    },
    /// Install a device in a vehicle (manager on both).
    Attach {
        #[command(flatten)]
        actor: Actor,
        /// The device's IMEI.
        #[arg(long)]
        device: String,
        #[arg(long)]
        vehicle: String,
    },
    /// Remove a device from its vehicle.
    Detach {
        #[command(flatten)]
        actor: Actor,
        #[arg(long)]
        device: String,
    },
}

/// Opens the domain, runs `f`, closes the store whatever happened.
async fn with_domain<T, F, Fut>(actor: &Actor, f: F) -> Result<T>
where
    F: FnOnce(Ekko, ekko_core::Caller, ekko_core::fleet::GroupId) -> Fut,
    Fut: std::future::Future<Output = Result<T, ekko_core::DomainError>>,
{
    let (ekko, store) = server::open_domain(&actor.data.dir()).await?;
    let result = match ekko.act_as(&actor.account).await {
        Ok((caller, root)) => f(ekko, caller, root).await,
        Err(e) => Err(e),
    };
    store.close().await;
    Ok(result?)
}

/// Every page of a list (the CLI prints whole lists).
const CLI_PAGE: i64 = 500;

pub async fn group(command: GroupCommand) -> Result<()> {
    match command {
        GroupCommand::List { actor, group, text } => {
            let rows = with_domain(&actor, |ekko, caller, _| async move {
                let mut rows = vec![];
                let mut next: Option<String> = None;
                loop {
                    let page = ekko
                        .groups(
                            Some(&caller),
                            ListArgs {
                                group_id: group.as_deref(),
                                text: text.as_deref(),
                                status: None,
                            },
                            PageArgs {
                                page_size: Some(CLI_PAGE),
                                page_id: next.as_deref(),
                            },
                        )
                        .await?;
                    for g in page.list {
                        let role = ekko.role_on_group(Some(&caller), g.id).await?;
                        rows.push((g, role));
                    }
                    match page.next {
                        Some(n) => next = Some(n),
                        None => break,
                    }
                }
                Ok(rows)
            })
            .await?;
            println!("{:<8} {:<8} {:<8} NAME", "ID", "PARENT", "ROLE");
            for (g, role) in rows {
                let parent = g.parent.map(|p| p.to_string()).unwrap_or("-".into());
                println!(
                    "{:<8} {:<8} {:<8} {}",
                    g.id.to_string(),
                    parent,
                    role.as_str(),
                    g.name
                );
            }
            Ok(())
        }
        GroupCommand::Create {
            actor,
            parent,
            name,
            description,
        } => {
            let g = with_domain(&actor, |ekko, caller, root| async move {
                let parent = parent.unwrap_or_else(|| root.to_string());
                ekko.create_group(Some(&caller), &parent, &name, description.as_deref())
                    .await
            })
            .await?;
            println!(
                "created group {} '{}' under group {}",
                g.id,
                g.name,
                g.parent.map(|p| p.to_string()).unwrap_or_default()
            );
            Ok(())
        }
        GroupCommand::Update {
            actor,
            id,
            name,
            description,
            parent,
        } => {
            let g = with_domain(&actor, |ekko, caller, _| async move {
                ekko.update_group(
                    Some(&caller),
                    &id,
                    name.as_deref(),
                    description.as_deref(),
                    parent.as_deref(),
                )
                .await
            })
            .await?;
            println!("updated group {} '{}'", g.id, g.name);
            Ok(())
        }
        GroupCommand::Delete { actor, id } => {
            let shown = id.clone();
            with_domain(&actor, |ekko, caller, _| async move {
                ekko.delete_group(Some(&caller), &id).await
            })
            .await?;
            println!("deleted group {}", shown.trim());
            Ok(())
        }
        GroupCommand::Invite {
            actor,
            group,
            email,
            role,
        } => {
            let outcome = with_domain(&actor, |ekko, caller, _| async move {
                ekko.invite(Some(&caller), &group, &email, &role).await
            })
            .await?;
            match outcome {
                InviteOutcome::Added(a) => println!("{} now holds the role", a.email),
                InviteOutcome::Pending { invitation, code } => println!(
                    "no account with email {} yet. Give them this one-time code; once signed up they call \
                     invitation_accept(code: \"{code}\") to take the {} role on group {}:\n{code}",
                    invitation.email, invitation.role, invitation.group
                ),
            }
            Ok(())
        }
        GroupCommand::Revoke {
            actor,
            group,
            email,
        } => {
            let removed = with_domain(&actor, |ekko, caller, _| async move {
                let member = ekko.account_by_email(&email).await?;
                ekko.revoke_role(Some(&caller), &group, &member.id.to_string())
                    .await
            })
            .await?;
            println!(
                "{}",
                if removed {
                    "role revoked"
                } else {
                    "that account held no role on that group: nothing changed"
                }
            );
            Ok(())
        }
    }
}

fn describe(v: &ekko_core::fleet::Vehicle) -> String {
    let d = &v.details;
    [
        d.name.as_deref(),
        d.plate.as_deref(),
        d.make.as_deref(),
        d.model.as_deref(),
        d.vin.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" · ")
}

pub async fn vehicle(command: VehicleCommand) -> Result<()> {
    match command {
        VehicleCommand::List { actor, group, text } => {
            let rows = with_domain(&actor, |ekko, caller, _| async move {
                let mut rows = vec![];
                let mut next: Option<String> = None;
                loop {
                    let page = ekko
                        .vehicles(
                            Some(&caller),
                            ListArgs {
                                group_id: group.as_deref(),
                                text: text.as_deref(),
                                status: None,
                            },
                            PageArgs {
                                page_size: Some(CLI_PAGE),
                                page_id: next.as_deref(),
                            },
                        )
                        .await?;
                    rows.extend(page.list);
                    match page.next {
                        Some(n) => next = Some(n),
                        None => break,
                    }
                }
                Ok(rows)
            })
            .await?;
            println!("{:<8} {:<8} VEHICLE", "ID", "GROUP");
            for v in rows {
                println!(
                    "{:<8} {:<8} {}",
                    v.id.to_string(),
                    v.group.to_string(),
                    describe(&v)
                );
            }
            Ok(())
        }
        VehicleCommand::Create {
            actor,
            group,
            fields,
        } => {
            let v = with_domain(&actor, |ekko, caller, root| async move {
                let group = group.unwrap_or_else(|| root.to_string());
                ekko.create_vehicle(Some(&caller), &group, &fields.args())
                    .await
            })
            .await?;
            println!(
                "created vehicle {} in group {} ({})",
                v.id,
                v.group,
                describe(&v)
            );
            Ok(())
        }
        VehicleCommand::Update {
            actor,
            id,
            group,
            fields,
        } => {
            let v = with_domain(&actor, |ekko, caller, _| async move {
                ekko.update_vehicle(Some(&caller), &id, group.as_deref(), &fields.args())
                    .await
            })
            .await?;
            println!("updated vehicle {} ({})", v.id, describe(&v));
            Ok(())
        }
        VehicleCommand::Delete { actor, id } => {
            let shown = id.clone();
            with_domain(&actor, |ekko, caller, _| async move {
                ekko.delete_vehicle(Some(&caller), &id).await
            })
            .await?;
            println!("deleted vehicle {}", shown.trim());
            Ok(())
        }
        VehicleCommand::Attach {
            actor,
            device,
            vehicle,
        } => {
            let i = with_domain(&actor, |ekko, caller, _| async move {
                ekko.attach_device(Some(&caller), &device, &vehicle).await
            })
            .await?;
            println!("device {} is installed in vehicle {}", i.imei, i.vehicle);
            Ok(())
        }
        VehicleCommand::Detach { actor, device } => {
            let i = with_domain(&actor, |ekko, caller, _| async move {
                ekko.detach_device(Some(&caller), &device).await
            })
            .await?;
            println!("device {} left vehicle {}", i.imei, i.vehicle);
            Ok(())
        }
    }
}
