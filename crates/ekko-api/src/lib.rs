//! The ekko v2 GraphQL API.
//!
//! - [`schema`]: types and resolvers. Resolvers are thin: they read the caller from the
//!   request context and call [`ekko_core::Ekko`]; they never decide access and never talk SQL.
//! - [`http`]: GraphQL over HTTP (POST and GET) plus the GraphiQL editor.
//!
//! Only this crate knows GraphQL. Socket transports (Phoenix/Absinthe, ...) execute the same
//! [`EkkoSchema`] and pass the caller the same way ([`RequestAuth`]).

pub mod devices;
pub mod errors;
pub mod fleet;
pub mod http;
pub mod kinds;
pub mod order;
pub mod schema;

use std::sync::Mutex;

use async_graphql::Schema;
use ekko_core::{Caller, Ekko};
use tokio::sync::oneshot;

pub use schema::Subscription;

/// Every query root field: accounts, devices and their data (`schema`), the fleet graph
/// (`fleet`).
#[derive(async_graphql::MergedObject, Default)]
pub struct Query(schema::CoreQuery, fleet::FleetQuery);

/// Every mutation.
#[derive(async_graphql::MergedObject, Default)]
pub struct Mutation(schema::CoreMutation, fleet::FleetMutation);

pub type EkkoSchema = Schema<Query, Mutation, Subscription>;

/// Deepest query accepted (introspection needs about 13 levels).
pub const MAX_QUERY_DEPTH: usize = 32;
/// Highest query complexity accepted.
pub const MAX_QUERY_COMPLEXITY: usize = 10_000;

pub fn build_schema(ekko: Ekko) -> EkkoSchema {
    Schema::build(Query::default(), Mutation::default(), Subscription)
        .data(ekko)
        .limit_depth(MAX_QUERY_DEPTH)
        .limit_complexity(MAX_QUERY_COMPLEXITY)
        .extension(order::QueryOrderFactory)
        .finish()
}

/// The authenticated caller of one request (`None`: anonymous). Put into every request's data.
#[derive(Clone, Debug)]
pub struct RequestAuth(pub Option<Caller>);

/// Lets a socket transport learn the moment a subscription is registered on the bus, so that
/// it can acknowledge the subscription only then: events published after the acknowledgement
/// are never missed.
pub struct SubscriptionReady(Mutex<Option<oneshot::Sender<()>>>);

impl SubscriptionReady {
    pub fn new() -> (Self, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        (SubscriptionReady(Mutex::new(Some(tx))), rx)
    }

    pub(crate) fn fire(&self) {
        if let Some(tx) = self.0.lock().expect("ready lock").take() {
            let _ = tx.send(());
        }
    }
}

/// The kind of operation a request would run, found without executing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperationKind {
    Query,
    Mutation,
    Subscription,
}

/// Finds the operation `operation_name` selects in `query`. `Err` carries a GraphQL-style
/// message (parse error, unknown operation name, several operations and no name).
pub fn operation_kind(query: &str, operation_name: Option<&str>) -> Result<OperationKind, String> {
    use async_graphql::parser::types::{DocumentOperations, OperationType};
    let doc = async_graphql::parser::parse_query(query).map_err(|e| e.to_string())?;
    let ty = match (&doc.operations, operation_name) {
        (DocumentOperations::Single(op), _) => op.node.ty,
        (DocumentOperations::Multiple(ops), Some(name)) => {
            ops.get(name)
                .ok_or_else(|| format!("Unknown operation named \"{name}\"."))?
                .node
                .ty
        }
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.values().next().expect("one").node.ty
        }
        (DocumentOperations::Multiple(_), None) => {
            return Err(
                "Must provide operation name if query contains multiple operations.".into(),
            );
        }
    };
    Ok(match ty {
        OperationType::Query => OperationKind::Query,
        OperationType::Mutation => OperationKind::Mutation,
        OperationType::Subscription => OperationKind::Subscription,
    })
}

/// Absinthe's rule for subscription documents, checked before executing: exactly one root
/// field, selected directly. (Two root fields would multiplex two streams under one id; a
/// fragment at the root is not supported by the executor and would end silently.)
pub fn check_subscription_shape(query: &str, operation_name: Option<&str>) -> Result<(), String> {
    use async_graphql::parser::types::{DocumentOperations, Selection};
    let doc = async_graphql::parser::parse_query(query).map_err(|e| e.to_string())?;
    let op = match (&doc.operations, operation_name) {
        (DocumentOperations::Single(op), _) => op,
        (DocumentOperations::Multiple(ops), Some(name)) => ops
            .get(name)
            .ok_or_else(|| format!("Unknown operation named \"{name}\"."))?,
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.values().next().expect("one")
        }
        (DocumentOperations::Multiple(_), None) => {
            return Err(
                "Must provide operation name if query contains multiple operations.".into(),
            );
        }
    };
    let items = &op.node.selection_set.node.items;
    if items.iter().any(|s| !matches!(s.node, Selection::Field(_))) {
        return Err("select the subscription field directly: fragments at the root of a subscription are not supported".into());
    }
    if items.len() != 1 {
        return Err("Only one field is permitted on the root object when subscribing".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_operation_kinds() {
        assert_eq!(operation_kind("{ a }", None), Ok(OperationKind::Query));
        assert_eq!(
            operation_kind("mutation { a }", None),
            Ok(OperationKind::Mutation)
        );
        assert_eq!(
            operation_kind("subscription S { a }", Some("S")),
            Ok(OperationKind::Subscription)
        );
        assert_eq!(
            operation_kind("query A { a } mutation B { b }", Some("B")),
            Ok(OperationKind::Mutation)
        );
        assert!(
            operation_kind("query A { a } query B { b }", None)
                .unwrap_err()
                .contains("operation name")
        );
        assert!(
            operation_kind("query A { a }", Some("Z"))
                .unwrap_err()
                .contains("Unknown operation")
        );
        assert!(operation_kind("{", None).is_err());
    }

    #[test]
    fn subscriptions_need_exactly_one_direct_root_field() {
        assert!(check_subscription_shape("subscription { a }", None).is_ok());
        let two = check_subscription_shape("subscription { a x: a }", None).unwrap_err();
        assert!(two.contains("Only one field"), "{two}");
        let spread = check_subscription_shape(
            "subscription { ...F } fragment F on Subscription { a }",
            None,
        )
        .unwrap_err();
        assert!(spread.contains("fragments"), "{spread}");
        assert!(
            check_subscription_shape("subscription { ... on Subscription { a } }", None).is_err()
        );
    }
}
