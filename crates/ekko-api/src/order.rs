//! Response fields in query order.
//!
//! The GraphQL spec orders a response's fields as the query selects them, and clients that
//! compare results or print them rely on it. async-graphql 7 resolves sibling fields
//! concurrently and records them in completion order, so this extension puts every object of
//! the result back into selection order (for queries, mutations and each subscription event).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery,
};
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, FragmentDefinition, Selection, SelectionSet,
};
use async_graphql::{Name, Positioned, Response, ServerResult, Value, Variables};

/// Registers [`QueryOrder`] on a schema.
pub struct QueryOrderFactory;

impl ExtensionFactory for QueryOrderFactory {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(QueryOrder::default())
    }
}

#[derive(Default)]
struct QueryOrder {
    document: Mutex<Option<ExecutableDocument>>,
}

#[async_trait::async_trait]
impl Extension for QueryOrder {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        *self.document.lock().expect("order lock") = Some(document.clone());
        Ok(document)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let mut response = next.run(ctx, operation_name).await;
        if let Some(doc) = self.document.lock().expect("order lock").as_ref() {
            let op = match &doc.operations {
                DocumentOperations::Single(op) => Some(op),
                DocumentOperations::Multiple(ops) => match operation_name {
                    Some(name) => ops.get(name),
                    None if ops.len() == 1 => ops.values().next(),
                    None => None,
                },
            };
            if let Some(op) = op {
                let sets = [&op.node.selection_set.node];
                reorder(&mut response.data, &sets, &doc.fragments);
            }
        }
        response
    }
}

type Fragments = HashMap<Name, Positioned<FragmentDefinition>>;

/// Response keys in selection order, each with the sub-selections merged under it.
fn collect<'a>(
    sets: &[&'a SelectionSet],
    fragments: &'a Fragments,
    depth: usize,
    out: &mut Vec<(String, Vec<&'a SelectionSet>)>,
) {
    if depth > 64 {
        return; // fragment cycles are rejected by validation; this only bounds the walk
    }
    for set in sets {
        for item in &set.items {
            match &item.node {
                Selection::Field(f) => {
                    let key = f.node.response_key().node.to_string();
                    let sub = &f.node.selection_set.node;
                    match out.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, subs)) => subs.push(sub),
                        None => out.push((key, vec![sub])),
                    }
                }
                Selection::FragmentSpread(spread) => {
                    if let Some(def) = fragments.get(&spread.node.fragment_name.node) {
                        collect(&[&def.node.selection_set.node], fragments, depth + 1, out);
                    }
                }
                Selection::InlineFragment(inline) => {
                    collect(
                        &[&inline.node.selection_set.node],
                        fragments,
                        depth + 1,
                        out,
                    );
                }
            }
        }
    }
}

fn reorder(value: &mut Value, sets: &[&SelectionSet], fragments: &Fragments) {
    match value {
        Value::Object(map) => {
            let mut keys = Vec::new();
            collect(sets, fragments, 0, &mut keys);
            let mut old = std::mem::take(map);
            for (key, subs) in keys {
                if let Some((name, mut child)) = old.shift_remove_entry(key.as_str()) {
                    reorder(&mut child, &subs, fragments);
                    map.insert(name, child);
                }
            }
            // Anything not found in the selection (e.g. __typename added by us) keeps its place at the end.
            map.extend(old);
        }
        Value::List(items) => {
            for item in items {
                reorder(item, sets, fragments);
            }
        }
        _ => {}
    }
}
