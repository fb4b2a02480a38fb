//! The routes of `/api/v1`, one module per resource; each handler maps HTTP to one domain call.

mod admins;
mod backend;
mod devices;
mod events;
mod groups;
mod session;
mod tokens;
mod updates;

use utoipa_axum::router::OpenApiRouter;

use super::ApiState;

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .merge(session::routes())
        .merge(tokens::routes())
        .merge(admins::routes())
        .merge(groups::routes())
        .merge(devices::routes())
        .merge(events::routes())
        .merge(updates::routes())
        .merge(backend::routes())
}

/// The refusals any route may answer besides its 200, each with the fatal body, for the OpenAPI
/// document.
pub struct Refusals;

impl utoipa::IntoResponses for Refusals {
    fn responses() -> std::collections::BTreeMap<
        String,
        utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
    > {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        [
            ("400", "Bad input; nothing was done"),
            ("401", "No token, or an invalid, expired or revoked one"),
            ("403", "The token's account lacks the right"),
            ("404", "No such route or object"),
            ("405", "The route does not take this method"),
            ("413", "The body is too large"),
            ("415", "The body is not JSON"),
            ("431", "The request head is larger than 8 KiB"),
            ("500", "An error of the server"),
            ("501", "Not implemented"),
            (
                "503",
                "Rate limit exceeded, or the database unavailable (see Retry-After)",
            ),
        ]
        .into_iter()
        .map(|(status, description)| {
            let response = ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Fatal")))
                        .build(),
                )
                .build();
            (status.to_string(), response.into())
        })
        .collect()
    }
}

/// Ids in paths: a device id (any characters but `/`), group and row numbers.
pub type Reply<T> = Result<axum::Json<T>, super::error::ApiError>;
