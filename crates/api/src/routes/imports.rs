//! Contact imports: upload a CSV or XLSX file; it is processed in the background and its
//! progress, counters and refused rows can be read back.

use axum::{
    extract::{DefaultBodyLimit, Multipart, State},
    http::{StatusCode, header},
    response::IntoResponse,
};
use chrono::{DateTime, Utc};
use pinglayer_domain::ImportId;
use pinglayer_engine::imports::{Format, ImportOptions};
use pinglayer_store::imports::Import;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::views::ErrorBody;
use crate::{
    ApiContext, ApiError, ApiResult,
    auth::{Auth, perm},
    extract::PathId,
};

pub fn routes() -> OpenApiRouter<ApiContext> {
    OpenApiRouter::new()
        .routes(routes!(start_import))
        // Uploads are limited by --max-import-bytes, counted while streaming to disk.
        .layer(DefaultBodyLimit::disable())
        .merge(
            OpenApiRouter::new()
                .routes(routes!(get_import))
                .routes(routes!(import_errors)),
        )
}

#[derive(Serialize, ToSchema)]
pub struct ImportView {
    pub id: String,
    /// `queued`, `running`, `completed` or `failed`.
    pub status: String,
    pub filename: String,
    pub total: i64,
    pub processed: i64,
    pub created: i64,
    pub updated: i64,
    pub skipped: i64,
    pub failed: i64,
    /// Rows that repeated a phone seen earlier in the file, merged into that contact (the later
    /// row's fields win). `total` = created + updated + skipped + failed + merged.
    pub merged: i64,
    /// 0–1; 1 when finished.
    pub progress: f64,
    /// Why a failed import failed (nothing was changed when the file itself was bad).
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

fn view(i: &Import) -> ImportView {
    let done = matches!(i.status.as_str(), "completed" | "failed");
    ImportView {
        id: i.id.to_string(),
        status: i.status.clone(),
        filename: i.filename.clone(),
        total: i.total,
        processed: i.processed,
        created: i.created,
        updated: i.updated,
        skipped: i.skipped,
        failed: i.failed,
        merged: i.merged,
        progress: if done {
            1.0
        } else if i.total > 0 {
            i.processed as f64 / i.total as f64
        } else {
            0.0
        },
        error: i.error.clone(),
        created_at: i.created_at,
        finished_at: i.finished_at,
    }
}

/// The multipart form of an import (documentation: the handler reads the parts as they come).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ImportForm {
    /// The file: `.csv` (UTF-8) or a spreadsheet (`.xlsx`, `.xls`, `.ods`; its first sheet),
    /// up to the operator's `--max-import-bytes`. Headers are detected (phone/mobile/number,
    /// name, email, language, birthday/dob, tags); other columns become attributes.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// JSON object of header → field (`phone`, `name`, `email`, `language`, `birthday`, `tags`,
    /// `attributes.<key>` or `skip`), e.g. `{"Cell": "phone", "Tier": "attributes.tier"}`.
    mapping: Option<String>,
    /// ISO 3166 alpha-2 for phones written without `+` (default: the tenant's).
    default_country: Option<String>,
    /// Tags added to every imported contact, comma-separated.
    tags: Option<String>,
    /// `skip` (default) or `update` for phones the tenant has already.
    on_duplicate: Option<String>,
}

/// Import contacts from a CSV or XLSX file (multipart field `file`), with optional fields
/// `mapping` (JSON: header → field), `default_country`, `tags` (comma-separated) and
/// `on_duplicate` (`skip` or `update`). Answers 202 with the job; poll `GET /api/v1/imports/{id}`.
#[utoipa::path(post, path = "/api/v1/contacts/import", tag = "contacts", security(("bearer" = []), ("api_key" = [])),
    request_body(content = ImportForm, content_type = "multipart/form-data"),
    responses(
        (status = 202, body = ImportView),
        (status = 413, body = ErrorBody),
        (status = 415, description = "`unsupported_file_type`", body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
async fn start_import(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::ContactsWrite>,
    mp: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> ApiResult<(StatusCode, axum::Json<ImportView>)> {
    let mut mp = mp.map_err(|_| {
        ApiError::UnsupportedMediaType("Send multipart/form-data with a `file` field.".into())
    })?;
    let dir = ctx.settings.data_dir.join("imports");
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(anyhow::Error::new)?;
    let mut opts = ImportOptions::default();
    let mut file: Option<(std::path::PathBuf, String, Format)> = None;
    let bad = |e: axum::extract::multipart::MultipartError| {
        ApiError::bad_request("malformed_multipart", e.body_text())
    };
    while let Some(mut field) = mp.next_field().await.map_err(bad)? {
        match field.name().unwrap_or_default() {
            "file" => {
                let name = field.file_name().unwrap_or("upload").to_string();
                let lower = name.to_lowercase();
                let format = if lower.ends_with(".csv") || field.content_type() == Some("text/csv")
                {
                    Format::Csv
                } else if lower.ends_with(".xlsx")
                    || lower.ends_with(".xls")
                    || lower.ends_with(".ods")
                {
                    Format::Xlsx
                } else {
                    return Err(ApiError::UnsupportedMediaType(
                        "Upload a .csv or .xlsx file.".into(),
                    ));
                };
                // The reader picks its parser by extension: keep the spreadsheet's own.
                let ext = match format {
                    Format::Csv => "csv",
                    _ if lower.ends_with(".xls") => "xls",
                    _ if lower.ends_with(".ods") => "ods",
                    _ => "xlsx",
                };
                let path = dir.join(format!("{}.{ext}", uuid::Uuid::now_v7()));
                let mut out = tokio::fs::File::create(&path)
                    .await
                    .map_err(anyhow::Error::new)?;
                let mut size = 0usize;
                while let Some(chunk) = field.chunk().await.map_err(bad)? {
                    size += chunk.len();
                    if size > ctx.settings.max_import_bytes {
                        drop(out);
                        let _ = tokio::fs::remove_file(&path).await;
                        return Err(ApiError::PayloadTooLarge);
                    }
                    out.write_all(&chunk).await.map_err(anyhow::Error::new)?;
                }
                out.flush().await.map_err(anyhow::Error::new)?;
                file = Some((path, name, format));
            }
            "mapping" => {
                let t = field.text().await.map_err(bad)?;
                opts.mapping = serde_json::from_str(&t).map_err(|e| {
                    ApiError::field(
                        "mapping",
                        format!("must be a JSON object of header → field: {e}"),
                    )
                })?;
            }
            "default_country" => {
                opts.default_country = Some(field.text().await.map_err(bad)?.trim().to_string())
                    .filter(|s| !s.is_empty())
            }
            "tags" => {
                opts.tags = field
                    .text()
                    .await
                    .map_err(bad)?
                    .split(',')
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
                    .collect()
            }
            "on_duplicate" => {
                let v = field.text().await.map_err(bad)?.trim().to_string();
                if v != "skip" && v != "update" {
                    return Err(ApiError::field("on_duplicate", "must be skip or update"));
                }
                opts.on_duplicate = Some(v);
            }
            _ => {}
        }
    }
    let Some((path, name, format)) = file else {
        return Err(ApiError::field("file", "is required"));
    };
    opts.default_country = match opts.default_country.take() {
        Some(c) => Some(pinglayer_domain::phone::country_code(&c)?),
        None => p.tenant.default_country.clone(),
    };
    for t in &opts.tags {
        pinglayer_domain::contact::tag(t)?;
    }
    let options = serde_json::json!({"mapping": opts.mapping, "default_country": opts.default_country, "tags": opts.tags, "on_duplicate": opts.on_duplicate});
    let job = ctx
        .db
        .create_import(
            p.tenant.id,
            &name,
            if format == Format::Csv { "csv" } else { "xlsx" },
            &options,
            ctx.clock.now(),
        )
        .await?;
    let (db, clock, tenant, id) = (ctx.db.clone(), ctx.clock.clone(), p.tenant.id, job.id);
    tokio::spawn(async move {
        pinglayer_engine::imports::run(&db, clock.as_ref(), tenant, id, &path, format, opts).await;
    });
    Ok((StatusCode::ACCEPTED, axum::Json(view(&job))))
}

/// An import's status and counters.
#[utoipa::path(get, path = "/api/v1/imports/{id}", tag = "contacts", params(("id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = ImportView), (status = 404, body = ErrorBody)))]
async fn get_import(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::ContactsRead>,
    PathId(id): PathId<ImportId>,
) -> ApiResult<axum::Json<ImportView>> {
    Ok(axum::Json(view(&ctx.db.import(p.tenant.id, id).await?)))
}

/// The rows an import refused: `row,reason,raw` as CSV.
#[utoipa::path(get, path = "/api/v1/imports/{id}/errors.csv", tag = "contacts", params(("id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, content_type = "text/csv", body = String), (status = 404, body = ErrorBody)))]
async fn import_errors(
    State(ctx): State<ApiContext>,
    Auth(p, ..): Auth<perm::ContactsRead>,
    PathId(id): PathId<ImportId>,
) -> ApiResult<impl IntoResponse> {
    ctx.db.import(p.tenant.id, id).await?;
    let rows = ctx.db.import_errors(p.tenant.id, id).await?;
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["row", "reason", "raw"])
        .map_err(anyhow::Error::new)?;
    for (row, reason, raw) in rows {
        w.write_record([row.to_string(), reason, raw])
            .map_err(anyhow::Error::new)?;
    }
    let body = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body))
}
