//! DomainError → GraphQL error, in one place: the message a person reads plus
//! `extensions.code` (`UNAUTHENTICATED`, `FORBIDDEN`, `NOT_FOUND`, `BAD_USER_INPUT`, ...).

use async_graphql::ErrorExtensions;
use ekko_core::DomainError;

pub fn to_graphql(e: DomainError) -> async_graphql::Error {
    let code = e.code();
    let field = match &e {
        DomainError::Invalid { field, .. } => Some(field.clone()),
        _ => None,
    };
    async_graphql::Error::new(e.to_string()).extend_with(|_, ext| {
        ext.set("code", code);
        if let Some(f) = &field {
            ext.set("field", f.as_str());
        }
    })
}
