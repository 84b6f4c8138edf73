//! Which notification kinds a `deviceNotifications` subscription asked for.
//!
//! A subscriber receives the kinds its selection names with type conditions
//! (`... on Track { }`, `... on Presence { }`, or a fragment on one of them); a selection with
//! no type condition at all (only `deviceId`, or `... on DeviceNotification`) receives every
//! kind. So the getting-started client, which selects `... on Track`, receives tracks only,
//! never an event it did not ask for and cannot read.

use std::collections::HashSet;

use async_graphql::Context;
use async_graphql::parser::types::{Selection, SelectionSet};
use ekko_core::notification::DeviceNotification;
use ekko_core::ports::BusItem;

#[derive(Clone, Debug, PartialEq)]
pub struct KindFilter {
    /// `None`: every kind.
    kinds: Option<HashSet<&'static str>>,
}

const KINDS: [&str; 4] = ["Track", "Presence", "Message", "Poke"];

fn walk(
    set: &SelectionSet,
    ctx: &Context<'_>,
    found: &mut HashSet<&'static str>,
    everything: &mut bool,
    depth: usize,
) {
    if depth > 32 {
        return;
    }
    for item in &set.items {
        let (condition, inner) = match &item.node {
            Selection::Field(_) => continue,
            Selection::InlineFragment(f) => (
                f.node
                    .type_condition
                    .as_ref()
                    .map(|t| t.node.on.node.to_string()),
                &f.node.selection_set.node,
            ),
            Selection::FragmentSpread(s) => {
                match ctx.query_env.fragments.get(&s.node.fragment_name.node) {
                    Some(def) => (
                        Some(def.node.type_condition.node.on.node.to_string()),
                        &def.node.selection_set.node,
                    ),
                    None => continue,
                }
            }
        };
        match condition
            .as_deref()
            .and_then(|c| KINDS.iter().find(|k| **k == c))
        {
            Some(kind) => {
                found.insert(kind);
            }
            // No condition, or the interface itself: look inside for more specific ones, and
            // count its own fields as a request for everything.
            None => {
                if inner
                    .items
                    .iter()
                    .any(|i| matches!(i.node, Selection::Field(_)))
                {
                    *everything = true;
                }
                walk(inner, ctx, found, everything, depth + 1);
            }
        }
    }
}

impl KindFilter {
    pub fn from_context(ctx: &Context<'_>) -> Self {
        let set = &ctx.item.node.selection_set.node;
        let mut found = HashSet::new();
        let mut everything = false;
        walk(set, ctx, &mut found, &mut everything, 0);
        KindFilter {
            kinds: (!everything && !found.is_empty()).then_some(found),
        }
    }

    pub fn accepts(&self, item: &BusItem) -> bool {
        let BusItem::Notification(n) = item else {
            return true;
        };
        let Some(kinds) = &self.kinds else {
            return true;
        };
        kinds.contains(match &n.notification {
            DeviceNotification::Track(_) => "Track",
            DeviceNotification::Presence(_) => "Presence",
            DeviceNotification::Message(_) => "Message",
            DeviceNotification::Poke(_) => "Poke",
        })
    }
}
