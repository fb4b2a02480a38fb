//! Update files devices download: listed with size, SHA-256 and modification time, uploaded as a
//! raw body (written atomically), deleted.

use axum::extract::{Path, Request, State};
use futures_util::TryStreamExt;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{Refusals, Reply};
use crate::api::error::ApiError;
use crate::api::extract::{Auth, Flag, Paging, Query};
use crate::api::model::{Done, ListOf, UpdateFile};
use crate::api::ApiState;

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_updates))
        .routes(routes!(upload_update, delete_update))
}

/// The files and directories of the updates directory, by name.
#[utoipa::path(get, path = "/update-files", tag = "updates", params(Paging),
    responses((status = 200, body = ListOf<UpdateFile>), Refusals))]
async fn list_updates(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Query(paging): Query<Paging>,
) -> Reply<ListOf<UpdateFile>> {
    let page = paging.page()?;
    let files = state.domain.update_files(&caller).await?;
    let list = files
        .into_iter()
        .map(|f| UpdateFile {
            name: f.name,
            is_dir: Flag::from(f.is_dir),
            size: f.size,
            sha256: f.sha256,
            modified: f.modified,
        })
        .collect();
    Ok(axum::Json(ListOf::slice(list, page)))
}

/// Uploads a file as the raw request body (any content type), creating or replacing it at once:
/// devices see the old file or the new one, never a part. Directories in the name are created.
#[utoipa::path(post, path = "/update-files/{name}", tag = "updates",
    params(("name" = String, Path, description = "Relative name, `/` between directories")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, body = UpdateFile), Refusals))]
async fn upload_update(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(name): Path<String>,
    req: Request,
) -> Reply<UpdateFile> {
    let limit = state.max_upload_bytes;
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            format!("an update file has at most {limit} bytes"),
        ));
    }
    let stream = req
        .into_body()
        .into_data_stream()
        .map_err(std::io::Error::other);
    let file = state
        .domain
        .upload_update(&caller, &name, Box::pin(stream), limit)
        .await?;
    Ok(axum::Json(UpdateFile {
        name: file.name,
        is_dir: Flag::from(false),
        size: file.size,
        sha256: file.sha256,
        modified: file.modified,
    }))
}

/// Deletes a file, or an empty directory.
#[utoipa::path(delete, path = "/update-files/{name}", tag = "updates",
    params(("name" = String, Path, description = "Relative name, `/` between directories")),
    responses((status = 200, body = Done), Refusals))]
async fn delete_update(
    State(state): State<ApiState>,
    Auth(caller): Auth,
    Path(name): Path<String>,
) -> Reply<Done> {
    state.domain.delete_update(&caller, &name).await?;
    Ok(axum::Json(Done {
        audit_id: None,
        error_list: None,
    }))
}
