//! Exporting a report as CSV (streamed page by page as it is read) or XLSX (rows written to a
//! temporary file as read, then zipped and streamed: the format needs the whole workbook). Every export route gives its columns, a way to turn a
//! row into cells, and a page fetcher; this module does the rest the same way for all.

use axum::{
    http::header::{CONTENT_DISPOSITION, CONTENT_TYPE},
    response::{IntoResponse, Response},
};
use std::future::Future;

use crate::{ApiError, ApiResult};

/// `csv` or `xlsx`, from a `format` query parameter (CSV when absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Xlsx,
}

impl Format {
    pub fn parse(raw: Option<&str>) -> ApiResult<Format> {
        match raw.unwrap_or("csv") {
            "csv" => Ok(Format::Csv),
            "xlsx" => Ok(Format::Xlsx),
            _ => Err(ApiError::field("format", "must be csv or xlsx")),
        }
    }
}

/// One page of rows as cells, and the cursor of the next page (`None`: that was the last).
pub type Page<K> = (Vec<Vec<String>>, Option<K>);

/// Answers with the whole report: `fetch(None)` gives the first page, `fetch(Some(k))` the
/// page after `k`. `name` is the file name without its extension.
pub async fn export<K, F, Fut>(
    format: Format,
    name: &'static str,
    columns: &'static [&'static str],
    fetch: F,
) -> ApiResult<Response>
where
    K: Send + 'static,
    F: Fn(Option<K>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ApiResult<Page<K>>> + Send + 'static,
{
    if format == Format::Xlsx {
        // Constant-memory mode writes each row to a temporary file as it comes; the workbook
        // is then zipped into another temporary file, which is streamed out. Memory holds a
        // page of rows, not the report.
        let mut wb = rust_xlsxwriter::Workbook::new();
        let ws = wb
            .add_worksheet_with_constant_memory()
            .map_err(anyhow::Error::new)?;
        for (i, h) in columns.iter().enumerate() {
            ws.write_string(0, i as u16, *h)
                .map_err(anyhow::Error::new)?;
        }
        let (mut row, mut after) = (1u32, None);
        loop {
            let (rows, next) = fetch(after).await?;
            for cells in &rows {
                for (i, cell) in cells.iter().enumerate() {
                    ws.write_string(row, i as u16, cell)
                        .map_err(anyhow::Error::new)?;
                }
                row += 1;
            }
            match next {
                Some(k) => after = Some(k),
                None => break,
            }
        }
        let file = tokio::task::spawn_blocking(move || -> anyhow::Result<std::fs::File> {
            use std::io::Seek;
            let mut file = tempfile::tempfile()?;
            wb.save_to_writer(&mut file)?;
            file.rewind()?;
            Ok(file)
        })
        .await
        .map_err(anyhow::Error::new)??;
        let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(
            tokio::fs::File::from_std(file),
        ));
        let disposition = format!("attachment; filename=\"{name}.xlsx\"");
        return Ok((
            [
                (
                    CONTENT_TYPE,
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet".to_string(),
                ),
                (CONTENT_DISPOSITION, disposition),
            ],
            body,
        )
            .into_response());
    }
    let stream = futures::stream::unfold(Some((None::<K>, true)), move |state| {
        let fetch = fetch.clone();
        async move {
            let (after, first) = state?;
            let result: ApiResult<(Vec<u8>, Option<K>)> = async {
                let (rows, next) = fetch(after).await?;
                let mut w = csv::Writer::from_writer(Vec::new());
                if first {
                    w.write_record(columns).map_err(anyhow::Error::new)?;
                }
                for cells in &rows {
                    w.write_record(cells).map_err(anyhow::Error::new)?;
                }
                Ok((w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?, next))
            }
            .await;
            match result {
                Ok((bytes, next)) => Some((
                    Ok::<_, std::io::Error>(bytes),
                    next.map(|n| (Some(n), false)),
                )),
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
            }
        }
    });
    Ok((
        [
            (CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.csv\""),
            ),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}
