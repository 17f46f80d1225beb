//! Outgoing e-mail (one-time codes). Through SMTP when configured; in development without SMTP,
//! appended to `<data-dir>/dev-mailbox.log` for the developer to read. In production without
//! SMTP nothing is sent and an error is logged, without the code.

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor, message::header::ContentType,
};
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;

use crate::{Environment, Settings};

#[derive(Clone)]
pub enum Mailer {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: String,
    },
    DevMailbox(PathBuf),
    Disabled,
}

impl Mailer {
    pub fn from_settings(s: &Settings) -> anyhow::Result<Self> {
        Ok(match (&s.smtp, s.env) {
            (Some(smtp), _) => Mailer::Smtp {
                transport: AsyncSmtpTransport::<Tokio1Executor>::from_url(&smtp.url)?.build(),
                from: smtp.from.clone(),
            },
            (None, Environment::Development) => {
                Mailer::DevMailbox(s.data_dir.join("dev-mailbox.log"))
            }
            (None, Environment::Production) => Mailer::Disabled,
        })
    }

    pub async fn send(&self, to: &str, subject: &str, body: &str) -> anyhow::Result<()> {
        match self {
            Mailer::Smtp { transport, from } => {
                let msg = Message::builder()
                    .from(from.parse()?)
                    .to(to.parse()?)
                    .subject(subject)
                    .header(ContentType::TEXT_PLAIN)
                    .body(body.to_string())?;
                transport.send(msg).await?;
            }
            Mailer::DevMailbox(path) => {
                let mut f = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .await?;
                let line = serde_json::json!({ "to": to, "subject": subject, "body": body });
                f.write_all(format!("{line}\n").as_bytes()).await?;
                tracing::info!(to, mailbox = %path.display(), "development: e-mail written to the dev mailbox");
            }
            Mailer::Disabled => {
                tracing::error!(
                    to,
                    subject,
                    "no SMTP server is configured (--smtp-url); e-mail not sent"
                );
            }
        }
        Ok(())
    }
}
